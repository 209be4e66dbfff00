//! The one integration-test binary: black-box tests that start the Zoho sandbox and real warehouses.

mod conformance;

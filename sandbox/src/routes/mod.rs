//! Request handlers, one module per face of the sandbox: Zoho Accounts (`oauth`), the CRM v8 API
//! (`crm`; the currencies and the stage history in `related`) and the test-only `/__sandbox/` endpoints (`control`).

pub mod control;
pub mod crm;
pub mod oauth;
pub mod related;

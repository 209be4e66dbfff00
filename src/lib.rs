//! zoho-deals-sync: copies closed-won deals from Zoho CRM into a warehouse.

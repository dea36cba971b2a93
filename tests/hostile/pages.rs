//! Hostile pages: what a response says (windows, paging, records).

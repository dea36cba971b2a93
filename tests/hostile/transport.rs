//! Hostile transport: how a response arrives (headers, bodies, redirects, TLS, logs).

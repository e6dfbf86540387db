//! Joining with a bootstrap token (filled in below).

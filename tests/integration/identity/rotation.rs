//! Rotation of the joined certificate (filled in below).

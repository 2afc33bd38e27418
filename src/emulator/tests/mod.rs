//! Unit tests of the emulator's pieces that the HTTP tests reach only indirectly.

mod auth;

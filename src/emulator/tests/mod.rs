//! Unit tests of the emulator's pieces that the HTTP tests reach only indirectly: `auth`, the
//! local Entra's tokens.

mod auth;

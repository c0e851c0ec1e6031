//! Rebuild when a migration is added: `sqlx::migrate!` embeds `migrations/` at compile time
//! but only notices edits to files it already embedded.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

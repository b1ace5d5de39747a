//! The migrations are read into the library when it compiles (`sqlx::migrate!`): a migration
//! added or changed compiles it again.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}

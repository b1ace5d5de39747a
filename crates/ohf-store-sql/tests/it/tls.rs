//! Postgres over TLS: `sslmode=require` encrypts, `verify-ca` and `verify-full` check the
//! server's certificate against a CA file, and a CA that did not sign it is refused.

use ohf_app::Requests;
use ohf_store_sql::PostgresStore;

use crate::contract::postgres_url;

fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// The server's own certificate (self-signed), as the CA to trust: `OHF_TEST_DATABASE_CA`,
/// else the file the server names.
async fn server_certificate() -> String {
    if let Ok(ca) = std::env::var("OHF_TEST_DATABASE_CA") {
        return ca;
    }
    let pool = sqlx::PgPool::connect(&postgres_url()).await.expect("postgres");
    sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&pool).await.expect("ssl_cert_file")
}

#[tokio::test]
async fn sslmode_require_encrypts_the_connection_and_the_store_works_over_it() {
    let url = with(&postgres_url(), "sslmode=require");
    let pool = sqlx::PgPool::connect(&url).await.expect("sslmode=require connects (ohf is built with TLS)");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await.unwrap();
    assert!(encrypted, "the connection is encrypted");
    let schema = format!("ohf_tls_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::open(&url, Some(&schema), 2).await.expect("the store opens over TLS");
    let r = ohf_domain::Request::provision(ohf_domain::testing::provision_spec("req-tls", 1), ohf_domain::testing::T0);
    store.save(&[&r], None).await.unwrap();
    assert!(store.get(r.id()).await.unwrap().is_some());
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&pool).await.unwrap();
}

#[tokio::test]
async fn verify_modes_check_the_certificate_against_the_ca_file() {
    let ca = server_certificate().await;
    // The server's certificate names localhost.
    let by_name = postgres_url().replace("127.0.0.1", "localhost");
    let verified = with(&by_name, &format!("sslmode=verify-ca&sslrootcert={ca}"));
    sqlx::PgPool::connect(&verified).await.expect("verify-ca with the server's CA connects");
    let full = with(&by_name, &format!("sslmode=verify-full&sslrootcert={ca}"));
    sqlx::PgPool::connect(&full).await.expect("verify-full to the name in the certificate connects");
    let wrong_name = with(&postgres_url(), &format!("sslmode=verify-full&sslrootcert={ca}"));
    assert!(sqlx::PgPool::connect(&wrong_name).await.is_err(), "verify-full refuses a certificate for another name");

    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&wrong, stranger.cert.pem()).unwrap();
    let refused = with(&by_name, &format!("sslmode=verify-ca&sslrootcert={}", wrong.display()));
    assert!(
        sqlx::PgPool::connect(&refused).await.is_err(),
        "a CA that did not sign the server's certificate is refused"
    );
}

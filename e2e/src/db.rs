//! A PostgreSQL database of each test's own.

use sqlx::{Connection, PgConnection, PgPool};

pub struct TestDb {
    pub name: String,
    base: String,
}

impl TestDb {
    /// Creates an empty database named `chat_t_<random>`, dropped again
    /// when this is dropped, whether the test passed or panicked (the test
    /// script also drops what a killed run left behind).
    pub async fn create() -> Self {
        let admin = crate::admin_database_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL at {admin} ({e}). Start it, or run scripts/test.sh."
            )
        });
        let name = format!(
            "chat_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .expect("database URL has a path");
        Self { name, base }
    }

    /// The URL the persister writes with (the admin role).
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }

    /// The URL the gateway reads with: the read-only `chat_gateway` role
    /// the schema grants SELECT to.
    pub fn gateway_url(&self) -> String {
        let (scheme, rest) = self.base.split_once("://").expect("URL has a scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        format!("{scheme}://chat_gateway@{host}/{}", self.name)
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = crate::admin_database_url();
        let name = self.name.clone();
        // Drop may run inside the test's runtime, which cannot be blocked
        // on: a thread with a runtime of its own does the work. FORCE ends
        // the connections of processes not yet killed.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

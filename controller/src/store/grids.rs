//! Grids: list, add, rename, remove, and which one is the default.

use sqlx::Connection;

use super::{db_id, wire_id, Grid, GridId, Result, Store, StoreError};

impl Store {
    /// Every grid, by identifier.
    pub async fn grids(&self) -> Result<Vec<Grid>> {
        let rows: Vec<(i64, String, bool)> =
            sqlx::query_as("SELECT id, name, is_default FROM grids ORDER BY id")
                .fetch_all(&mut *self.readers.acquire().await)
                .await?;
        rows.into_iter()
            .map(|(id, name, is_default)| {
                Ok(Grid {
                    id: wire_id(id)?,
                    name,
                    is_default,
                })
            })
            .collect()
    }

    /// The grid jobs go to when a client names none (`gridIdentifier = ""`).
    pub async fn default_grid(&self) -> Result<GridId> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE is_default = 1")
            .fetch_optional(&mut *self.readers.acquire().await)
            .await?;
        let id = id.ok_or_else(|| StoreError::Corrupt("no grid is the default".into()))?;
        wire_id(id)
    }

    /// Adds a grid named `name` and returns its identifier.
    pub async fn add_grid(&self, name: &str) -> Result<GridId> {
        let name = checked_name(name)?;
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        name_is_free(&mut tx, name).await?;
        let id = sqlx::query("INSERT INTO grids (name) VALUES (?)")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        wire_id(id)
    }

    pub async fn rename_grid(&self, grid: GridId, new_name: &str) -> Result<()> {
        let name = checked_name(new_name)?;
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let holder: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if holder.is_some_and(|holder| holder != db_id(grid)) {
            return Err(StoreError::GridNameTaken(name.to_string()));
        }
        let changed = sqlx::query("UPDATE grids SET name = ? WHERE id = ?")
            .bind(name)
            .bind(db_id(grid))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NoSuchGrid(grid));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes an empty grid; its agents move to the default grid. The default grid and a
    /// grid that still holds jobs cannot be removed.
    pub async fn remove_grid(&self, grid: GridId) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let is_default: Option<bool> =
            sqlx::query_scalar("SELECT is_default FROM grids WHERE id = ?")
                .bind(db_id(grid))
                .fetch_optional(&mut *tx)
                .await?;
        match is_default {
            None => return Err(StoreError::NoSuchGrid(grid)),
            Some(true) => return Err(StoreError::CannotRemoveDefaultGrid(grid)),
            Some(false) => {}
        }
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE grid_id = ?")
            .bind(db_id(grid))
            .fetch_one(&mut *tx)
            .await?;
        if jobs > 0 {
            return Err(StoreError::GridNotEmpty {
                grid,
                jobs: jobs.unsigned_abs(),
            });
        }
        sqlx::query(
            "UPDATE agents SET grid_id = (SELECT id FROM grids WHERE is_default = 1)
             WHERE grid_id = ?",
        )
        .bind(db_id(grid))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM grids WHERE id = ?")
            .bind(db_id(grid))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn make_default_grid(&self, grid: GridId) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE id = ?")
            .bind(db_id(grid))
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NoSuchGrid(grid));
        }
        sqlx::query("UPDATE grids SET is_default = 0 WHERE is_default = 1")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE grids SET is_default = 1 WHERE id = ?")
            .bind(db_id(grid))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn checked_name(name: &str) -> Result<&str> {
    if name.trim().is_empty() {
        return Err(StoreError::EmptyGridName);
    }
    Ok(name)
}

async fn name_is_free(tx: &mut sqlx::SqliteConnection, name: &str) -> Result<()> {
    let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    match taken {
        Some(_) => Err(StoreError::GridNameTaken(name.to_string())),
        None => Ok(()),
    }
}

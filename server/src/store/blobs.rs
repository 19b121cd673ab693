//! Data sets, models, checkpoints and artifacts: files kept as blobs in the database, with
//! the metadata the API lists.
use super::quotas::{self, Quota};
use super::{now_ms, Result, Store};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

/// A row of `datasets` without its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub format: String,
    pub rows: i64,
    pub cols: i64,
    /// binary | real | categorical
    pub value_kind: String,
    pub q: i64,
    pub size_bytes: i64,
    pub notes: String,
    pub created_at: i64,
}

const DATASET_COLUMNS: &str =
    "id, tenant, name, format, n_rows, n_cols, value_kind, q, size_bytes, notes, created_at";

impl DatasetRecord {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(DatasetRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            name: row.try_get("name")?,
            format: row.try_get("format")?,
            rows: row.try_get("n_rows")?,
            cols: row.try_get("n_cols")?,
            value_kind: row.try_get("value_kind")?,
            q: row.try_get("q")?,
            size_bytes: row.try_get("size_bytes")?,
            notes: row.try_get("notes")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// A row of `models` without its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub model_type: String,
    pub job_id: Option<String>,
    pub size_bytes: i64,
    pub dims: BTreeMap<String, u64>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
}

const MODEL_COLUMNS: &str =
    "id, tenant, name, model_type, job_id, size_bytes, dims, metadata, created_at";

impl ModelRecord {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(ModelRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            name: row.try_get("name")?,
            model_type: row.try_get("model_type")?,
            job_id: row.try_get("job_id")?,
            size_bytes: row.try_get("size_bytes")?,
            dims: serde_json::from_str(row.try_get("dims")?)?,
            metadata: serde_json::from_str(row.try_get("metadata")?)?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The latest checkpoint of a job.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The attempt that wrote it.
    pub attempt: i64,
    /// Epochs completed when it was taken (mid-epoch checkpoints round down).
    pub epoch: i64,
    pub data: Vec<u8>,
}

/// Keyset cursor of a newest-first listing: (created_at, id) of the last item shown.
pub type Cursor = Option<(i64, String)>;

impl Store {
    pub async fn insert_dataset(&self, dataset: &DatasetRecord, data: &[u8]) -> Result<()> {
        self.insert_dataset_within(dataset, data, &Quota::UNLIMITED)
            .await
    }

    /// [`Store::insert_dataset`] checked against the tenant's stored-bytes `quota` in the
    /// insert's transaction ([`StoreError::QuotaExceeded`] over it).
    pub async fn insert_dataset_within(
        &self,
        dataset: &DatasetRecord,
        data: &[u8],
        quota: &Quota,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        quotas::lock_tenant(&mut tx, self.dialect, &dataset.tenant, quota).await?;
        sqlx::query(&format!(
            "INSERT INTO datasets ({DATASET_COLUMNS}, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&dataset.id)
        .bind(&dataset.tenant)
        .bind(&dataset.name)
        .bind(&dataset.format)
        .bind(dataset.rows)
        .bind(dataset.cols)
        .bind(&dataset.value_kind)
        .bind(dataset.q)
        .bind(dataset.size_bytes)
        .bind(&dataset.notes)
        .bind(dataset.created_at)
        .bind(data)
        .execute(&mut *tx)
        .await?;
        let size = dataset.size_bytes.max(0) as u64;
        let adding = quotas::Adding::Bytes("data set", size);
        quotas::check(&mut tx, &dataset.tenant, quota, adding).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_dataset(&self, tenant: &str, id: &str) -> Result<Option<DatasetRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {DATASET_COLUMNS} FROM datasets WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(DatasetRecord::from_row).transpose()
    }

    /// The uploaded file of a data set.
    pub async fn dataset_bytes(&self, tenant: &str, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM datasets WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn list_datasets(
        &self,
        tenant: &str,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<DatasetRecord>> {
        let (time, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {DATASET_COLUMNS} FROM datasets
              WHERE tenant = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))
              ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(tenant)
        .bind(time)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(DatasetRecord::from_row).collect()
    }

    /// Deletes a data set; false if the tenant has none with this id.
    pub async fn delete_dataset(&self, tenant: &str, id: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM datasets WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    /// Stores a model that no job produced (ImportModel).
    pub async fn insert_model(&self, model: &ModelRecord, data: &[u8]) -> Result<()> {
        self.insert_model_within(model, data, &Quota::UNLIMITED)
            .await
    }

    /// [`Store::insert_model`] checked against the tenant's stored-bytes `quota` in the
    /// insert's transaction ([`StoreError::QuotaExceeded`] over it).
    pub async fn insert_model_within(
        &self,
        model: &ModelRecord,
        data: &[u8],
        quota: &Quota,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        quotas::lock_tenant(&mut tx, self.dialect, &model.tenant, quota).await?;
        insert_model(&mut tx, model, data).await?;
        let adding = quotas::Adding::Bytes("model", model.size_bytes.max(0) as u64);
        quotas::check(&mut tx, &model.tenant, quota, adding).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_model(&self, tenant: &str, id: &str) -> Result<Option<ModelRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ModelRecord::from_row).transpose()
    }

    /// The safetensors file of a model.
    pub async fn model_bytes(&self, tenant: &str, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM models WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn list_models(
        &self,
        tenant: &str,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<ModelRecord>> {
        let (time, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models
              WHERE tenant = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))
              ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(tenant)
        .bind(time)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ModelRecord::from_row).collect()
    }

    /// The latest checkpoint of a job, if one was stored.
    pub async fn load_checkpoint(&self, job_id: &str) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT attempt, epoch, data FROM checkpoints WHERE job_id = $1")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(attempt, epoch, data)| Checkpoint {
            attempt,
            epoch,
            data,
        }))
    }

    /// A file a job of this tenant produced.
    pub async fn artifact_bytes(
        &self,
        tenant: &str,
        job_id: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT a.data FROM artifacts a JOIN jobs j ON j.id = a.job_id
              WHERE j.tenant = $1 AND a.job_id = $2 AND a.name = $3",
        )
        .bind(tenant)
        .bind(job_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }
}

pub(super) async fn insert_model(
    tx: &mut Transaction<'static, Any>,
    model: &ModelRecord,
    data: &[u8],
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO models ({MODEL_COLUMNS}, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(&model.id)
    .bind(&model.tenant)
    .bind(&model.name)
    .bind(&model.model_type)
    .bind(&model.job_id)
    .bind(model.size_bytes)
    .bind(serde_json::to_string(&model.dims)?)
    .bind(serde_json::to_string(&model.metadata)?)
    .bind(if model.created_at == 0 { now_ms() } else { model.created_at })
    .bind(data)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

//! The flow hospital, live: an operator retries a held instance (on its build or another)
//! or kills it, and the running node acts at once.

use std::path::Path;

use thiserror::Error;

use super::Node;
use crate::engine::component_cache::{check_header, content_hash};
use crate::model::FlowError;
use crate::store::{InstanceRecord, Status, StoreError, Write, encode};

/// Why a hospital action was refused.
#[derive(Debug, Error)]
pub enum HospitalError {
    /// No instance has that id.
    #[error("no instance `{0}` on this node")]
    Unknown(String),
    /// It is not held.
    #[error("instance `{id}` is {status}, not held in the hospital")]
    NotHeld { id: String, status: &'static str },
    /// The other build given is not a component.
    #[error("{0}")]
    Component(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Node {
    /// Instances held in the hospital, oldest first.
    pub fn held(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.journal().store().with_status(Status::Hospital)
    }

    async fn held_record(&self, id: &str) -> Result<InstanceRecord, HospitalError> {
        self.journal().sync().await?;
        let record = self
            .journal()
            .store()
            .record(id)?
            .ok_or_else(|| HospitalError::Unknown(id.into()))?;
        if record.status != Status::Hospital {
            return Err(HospitalError::NotHeld {
                id: id.into(),
                status: record.status.as_str(),
            });
        }
        Ok(record)
    }

    /// Run held instance `id` again from its journal, now; on the build at `component`
    /// when given (it replays its journal on it).
    pub async fn retry(&self, id: &str, component: Option<&Path>) -> Result<(), HospitalError> {
        self.held_record(id).await?;
        let mut batch = Vec::new();
        if let Some(path) = component {
            let bytes = std::fs::read(path).map_err(|e| {
                HospitalError::Component(format!("cannot read {}: {e}", path.display()))
            })?;
            check_header(&bytes, path).map_err(|e| HospitalError::Component(e.to_string()))?;
            let hash = content_hash(&bytes);
            batch.push(Write::Component {
                hash: hash.clone(),
                bytes,
            });
            batch.push(Write::Pin {
                id: id.into(),
                component: hash,
            });
        }
        batch.push(Write::Status {
            id: id.into(),
            status: Status::Running,
            output: None,
            message: None,
        });
        self.journal().write(batch).await?;
        let record = self
            .journal()
            .store()
            .record(id)?
            .ok_or_else(|| HospitalError::Unknown(id.into()))?;
        tracing::info!("instance {id} retried from the hospital by an operator");
        self.resume(record).await?;
        Ok(())
    }

    /// End held instance `id` as failed; whoever waits for it learns so at once.
    pub async fn kill(&self, id: &str) -> Result<(), HospitalError> {
        self.held_record(id).await?;
        let error = FlowError::Failed("killed by an operator".into());
        self.journal()
            .write(vec![Write::Status {
                id: id.into(),
                status: Status::Failed,
                output: Some(encode(&error).to_string().into_bytes()),
                message: Some(error.to_string()),
            }])
            .await?;
        tracing::info!("instance {id} killed in the hospital by an operator");
        self.completions().finish(id, &Err(error));
        Ok(())
    }
}

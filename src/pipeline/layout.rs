//! The layout of a pipeline's collection on the store: the name the pipeline is
//! configured with, `C`, is an alias of a versioned collection `C_v<N>`, so that a
//! full reindex builds `C_v<N+1>` beside the live one and switches the alias
//! (`daemon::reindex`). A collection from before aliases is a real `C`, used as is.

use super::{Pipeline, PipelineError};

/// `C_v<n>`: version `n` of the collection behind the alias `alias`.
pub fn versioned(alias: &str, n: u64) -> String {
    format!("{alias}_v{n}")
}

/// The version of `name` if it is one of `alias`'s (`C_v<N>`).
pub fn version_of(alias: &str, name: &str) -> Option<u64> {
    name.strip_prefix(alias)?.strip_prefix("_v")?.parse().ok()
}

impl Pipeline {
    /// On a fresh install, create `C_v1` and the alias `C`, so that the first
    /// reindex needs no migration. Learns the dimension by embedding one probe
    /// text; if the embedder is down, does nothing (the ordinary run then
    /// reports the problem).
    pub async fn ensure_layout(&self) -> Result<(), PipelineError> {
        let alias = &self.config.collection;
        let store = &self.store;
        let serr = |e| self.store_err(e);
        if store.collection_dim(alias).await.map_err(serr)?.is_some() {
            return Ok(()); // an alias or a (pre-alias) real collection already
        }
        let dim = match self
            .embedder
            .embed(&["ragd dimension probe".to_owned()])
            .await
        {
            Ok(v) if v.first().is_some_and(|v| !v.is_empty()) => v[0].len(),
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(pipeline = %self.name(), error = %e, "dimension probe failed");
                return Ok(());
            }
        };
        let target = versioned(alias, 1);
        store.ensure_collection(&target, dim).await.map_err(serr)?;
        store.set_alias(alias, &target).await.map_err(serr)?;
        tracing::info!(pipeline = %self.name(), %alias, %target, dim, "created versioned collection");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_only_for_this_alias() {
        assert_eq!(version_of("docs", &versioned("docs", 3)), Some(3));
        assert_eq!(version_of("docs", "docs_v"), None);
        assert_eq!(version_of("docs", "docs2_v3"), None);
        assert_eq!(version_of("docs", "docs"), None);
    }
}

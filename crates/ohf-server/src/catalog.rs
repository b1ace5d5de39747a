use std::path::PathBuf;

use async_trait::async_trait;
use ohf_app::{CatalogError, TemplateCatalog};
use ohf_domain::Template;

/// Templates from Host Factory's `awsprov_templates.json`, read on every call so an edit
/// takes effect at the next poll.
pub struct FileCatalog {
    path: PathBuf,
}

impl FileCatalog {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }
}

#[async_trait]
impl TemplateCatalog for FileCatalog {
    async fn templates(&self) -> Result<Vec<Template>, CatalogError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| CatalogError(format!("templates file {}: {e}", self.path.display())))?;
        Template::parse_file(&text).map_err(|e| CatalogError(format!("templates file {}: {e}", self.path.display())))
    }
}

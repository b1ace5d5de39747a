//! The templates, with how many more machines each may have.

use std::collections::HashMap;

use ohf_domain::Template;

use crate::cqrs::{Handler, message};
use crate::{App, AppError};

/// A template and how many more machines it may have; `None` is unlimited.
#[derive(Debug, Clone)]
pub struct TemplateAvailability {
    /// The template.
    pub template: Template,
    /// How many more machines it may have (`maxNumber` less those held); `None` is unlimited.
    pub available: Option<u32>,
}

impl TemplateAvailability {
    /// `template` with what its `maxNumber` leaves beside the machines `held` per template.
    fn of(template: Template, held: &HashMap<ohf_domain::TemplateId, u32>) -> Self {
        let used = held.get(template.id()).copied().unwrap_or(0);
        let available = template.max_number().map(|max| max.saturating_sub(used));
        Self { template, available }
    }
}

/// Every template with how many more machines it may have.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetAvailableTemplates;

message!(query GetAvailableTemplates => Vec<TemplateAvailability>);

/// One template with how many more machines it may have.
#[derive(Debug, Clone)]
pub struct GetTemplate {
    /// The template.
    pub template_id: String,
}

message!(query GetTemplate => TemplateAvailability);

impl Handler<GetAvailableTemplates> for App {
    /// Every template with how many more machines it may have.
    async fn handle(&self, _q: GetAvailableTemplates) -> Result<Vec<TemplateAvailability>, AppError> {
        let (templates, _) = self.templates().await?;
        let held = self.store.capacity_held().await?;
        let fits = self.placement_fits(&templates.iter().collect::<Vec<_>>()).await?;
        Ok(templates
            .into_iter()
            .zip(fits)
            .map(|(template, fits)| within(TemplateAvailability::of(template, &held), fits))
            .collect())
    }
}

impl Handler<GetTemplate> for App {
    /// One template with how many more machines it may have.
    async fn handle(&self, q: GetTemplate) -> Result<TemplateAvailability, AppError> {
        let template = self.template(&q.template_id).await?;
        let held = self.store.capacity_held().await?;
        let fits = self.placement_fits(&[&template]).await?.first().copied().flatten();
        Ok(within(TemplateAvailability::of(template, &held), fits))
    }
}

/// What the venues still fit of a template (when venues are configured) caps its number.
fn within(mut a: TemplateAvailability, fits: Option<u32>) -> TemplateAvailability {
    if let Some(fits) = fits {
        a.available = Some(a.available.map_or(fits, |n| n.min(fits)));
    }
    a
}

//! Check a template document.

use ohf_domain::{DomainError, Template};
use serde_json::Value;

use crate::cqrs::{Handler, message};
use crate::ports::CloudProvider;
use crate::{App, AppError};

/// The verdict on a template document.
#[derive(Debug, Clone)]
pub enum TemplateCheck {
    /// The template as ohf reads it, instance-type figures filled in.
    Valid(Box<Template>),
    /// The first rule it breaks.
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Check one template document: ohf's rules, then the provider that would serve it. A template
/// that breaks a rule is an answer (`TemplateCheck::Invalid`), not an error. It changes nothing
/// but may fill the shared cache of instance-type figures.
#[derive(Debug, Clone)]
pub struct ValidateTemplate {
    /// The template document, in Host Factory's fields.
    pub template: Value,
}

message!(command ValidateTemplate => TemplateCheck);

impl Handler<ValidateTemplate> for App {
    /// Checks one template document: ohf's rules, then the provider that would serve it. A
    /// template that breaks a rule is an answer, not an error.
    async fn handle(&self, cmd: ValidateTemplate) -> Result<TemplateCheck, AppError> {
        let invalid = |field: String, message: String| Ok(TemplateCheck::Invalid { field, message });
        let mut template = match Template::from_json(&cmd.template) {
            Ok(t) => t,
            Err(DomainError::Validation { field, message }) => return invalid(field, message),
            Err(e) => return invalid("template".into(), e.to_string()),
        };
        if !template.unresolved_types().is_empty() {
            let known = self.type_figures(std::slice::from_ref(&template)).await;
            if let Err(DomainError::Validation { field, message }) = template.resolve_types(&known) {
                return invalid(field, message);
            }
        }
        let provider = match self.choose_provider(&template, None).await {
            Ok(p) => p,
            Err(e) => return invalid("provider".into(), e.to_string()),
        };
        match provider.check_template(&template).await {
            Ok(()) => Ok(TemplateCheck::Valid(Box::new(template))),
            Err(e) => {
                invalid("template".into(), format!("provider '{}' cannot serve it: {}", provider.name(), e.message))
            }
        }
    }
}

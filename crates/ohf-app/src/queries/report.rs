//! Request analytics: what was asked in a window and how it went, what waits now, what is held
//! now, and what it costs (estimated from a price table).

use std::collections::BTreeMap;

use ohf_domain::{PriceType, Request, RequestKind, RequestState, Timestamp};
use serde::{Deserialize, Serialize};

use crate::cqrs::{Handler, message};
use crate::ports::RequestFilter;
use crate::{App, AppError};

/// Hourly prices in US dollars by instance type: on-demand, and spot where known (else
/// `spot_share` of on-demand). ohf ships list prices of common types; a `prices.json` in the
/// conf dir replaces or adds types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct PriceTable {
    /// On-demand $/hour by instance type.
    pub on_demand: BTreeMap<String, f64>,
    /// Spot $/hour by instance type.
    pub spot: BTreeMap<String, f64>,
    /// Spot as a share of on-demand where the table has no spot price.
    pub spot_share: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        // Linux on-demand list prices, us-east-1.
        let on_demand = [
            ("t3.micro", 0.0104),
            ("t3.small", 0.0208),
            ("t3.medium", 0.0416),
            ("t3.large", 0.0832),
            ("t3.xlarge", 0.1664),
            ("m5.large", 0.096),
            ("m5.xlarge", 0.192),
            ("m5.2xlarge", 0.384),
            ("m5.4xlarge", 0.768),
            ("m6i.large", 0.096),
            ("m6i.xlarge", 0.192),
            ("c5.large", 0.085),
            ("c5.xlarge", 0.17),
            ("c5.2xlarge", 0.34),
            ("c5.4xlarge", 0.68),
            ("c6i.large", 0.085),
            ("c6i.xlarge", 0.17),
            ("r5.large", 0.126),
            ("r5.xlarge", 0.252),
            ("r5.2xlarge", 0.504),
            ("r6i.large", 0.126),
        ]
        .into_iter()
        .map(|(t, p)| (t.to_owned(), p))
        .collect();
        Self { on_demand, spot: BTreeMap::new(), spot_share: 0.3 }
    }
}

impl PriceTable {
    /// $/hour of one machine of `instance_type` bought as `price`; `None` for a type the table
    /// does not know.
    pub fn hourly(&self, instance_type: &str, price: PriceType) -> Option<f64> {
        let on_demand = self.on_demand.get(instance_type).copied();
        match price {
            PriceType::Spot => self.spot.get(instance_type).copied().or(on_demand.map(|p| p * self.spot_share)),
            _ => on_demand,
        }
    }

    /// This table with `other`'s prices put over it.
    pub fn merged(mut self, other: PriceTable) -> Self {
        self.on_demand.extend(other.on_demand);
        self.spot.extend(other.spot);
        self.spot_share = other.spot_share;
        self
    }
}

/// The figures of the requests made in the last `period`, what waits now, what is held now and
/// its cost.
#[derive(Debug, Clone)]
pub struct GetRequestReport {
    /// The window: this long until now.
    pub period: std::time::Duration,
}

/// Times from request to COMPLETED.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    /// How many completed.
    pub completed: u64,
    /// Their mean, in seconds.
    pub average_secs: Option<f64>,
    /// Half took at most this long.
    pub p50_secs: Option<i64>,
    /// 95 in 100 took at most this long.
    pub p95_secs: Option<i64>,
}

/// Requests that ended badly with one code.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureCount {
    /// FAILED, TIMEOUT, PARTIAL_SUCCESS or REJECTED.
    pub category: String,
    /// The error's code (its first word, as the provider or ohf gave it).
    pub code: String,
    /// How many.
    pub count: u64,
    /// The latest message of the kind.
    pub example: String,
}

/// What waits now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// Requests not yet started.
    pub pending: u64,
    /// Requests under way.
    pub in_progress: u64,
    /// Unfinished requests by priority.
    pub by_priority: BTreeMap<String, u64>,
    /// The oldest unfinished request.
    pub oldest_request_id: Option<String>,
    /// How long it has waited, in seconds.
    pub oldest_age_secs: Option<i64>,
}

/// Machines held now, by template, provider and instance type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The template.
    pub template_id: String,
    /// The provider holding them.
    pub provider: String,
    /// Their instance type.
    pub instance_type: String,
    /// How many.
    pub machines: u64,
    /// Their cost per hour now, where the price table knows the type.
    pub hourly_usd: Option<f64>,
}

/// What the window's requests cost, estimated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Every request's.
    pub total_usd: f64,
    /// Each request's, the costliest first.
    pub per_request: Vec<(String, f64)>,
    /// Per tag (`key=value`), over the requests carrying it.
    pub per_tag: BTreeMap<String, f64>,
    /// Instance types the price table does not know (their machines count as free).
    pub unpriced_types: Vec<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReport {
    /// The window: from.
    pub since: String,
    /// The window: to (now).
    pub until: String,
    /// Provision requests made in the window.
    pub total: u64,
    /// Of them, by state now.
    pub by_state: BTreeMap<String, u64>,
    /// COMPLETED out of those that ended, in percent.
    pub success_rate: Option<f64>,
    /// Time to COMPLETED.
    pub time_to_complete: Durations,
    /// Bad endings by category and code, the most frequent first.
    pub failures: Vec<FailureCount>,
    /// Requests made per hour of the day (UTC), the busiest first (at most 3).
    pub peak_hours: Vec<(u32, u64)>,
    /// What waits now.
    pub backlog: Backlog,
    /// What is held now.
    pub held: Vec<Held>,
    /// Estimated cost of the window's requests: each machine priced from its launch until it
    /// went (its request's last change) or until now.
    pub cost: Cost,
}

message!(query GetRequestReport => RequestReport);

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * p).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

/// The code of an error message: its first word when it reads like one (`InsufficientInstanceCapacity: …`).
fn code_of(message: &str) -> String {
    let word = message.split([':', ' ']).next().unwrap_or_default();
    let code_like = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_');
    if code_like && word.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        word.to_owned()
    } else {
        "other".into()
    }
}

impl Handler<GetRequestReport> for App {
    async fn handle(&self, q: GetRequestReport) -> Result<RequestReport, AppError> {
        let now = self.clock.now();
        let since = now.plus_millis(-i64::try_from(q.period.as_millis()).unwrap_or(i64::MAX / 2));
        // Every state, REJECTED too: refusals count in the figures.
        let window = RequestFilter {
            kind: Some(RequestKind::Provision),
            created_since: Some(since),
            states: RequestState::ALL.to_vec(),
            ..Default::default()
        };
        let made = self.store.list(&window).await?;
        let mut by_state = BTreeMap::new();
        let mut durations = Vec::new();
        let mut failures: BTreeMap<(String, String), (u64, String, Timestamp)> = BTreeMap::new();
        let mut hours: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &made {
            *by_state.entry(r.state().as_str().to_owned()).or_insert(0u64) += 1;
            let hour = (r.created_at().unix_secs().rem_euclid(86_400) / 3600) as u32;
            *hours.entry(hour).or_insert(0) += 1;
            if r.state() == RequestState::Completed
                && let Some(done) = r.completed_at()
            {
                durations.push(done.secs_since(r.created_at()));
            }
            if matches!(
                r.state(),
                RequestState::Failed | RequestState::Timeout | RequestState::PartialSuccess | RequestState::Rejected
            ) {
                let message = r.error().unwrap_or("no message").to_owned();
                let entry = failures.entry((r.state().as_str().to_owned(), code_of(&message))).or_insert((
                    0,
                    String::new(),
                    Timestamp::from_unix_millis(0),
                ));
                entry.0 += 1;
                if r.updated_at() >= entry.2 {
                    entry.1 = message;
                    entry.2 = r.updated_at();
                }
            }
        }
        durations.sort_unstable();
        // Cancelled and rejected requests did not run: the rate is of those that did.
        let ended = made
            .iter()
            .filter(|r| {
                r.state().is_terminal() && !matches!(r.state(), RequestState::Cancelled | RequestState::Rejected)
            })
            .count() as u64;
        let completed = by_state.get(RequestState::Completed.as_str()).copied().unwrap_or(0);
        let mut failures: Vec<FailureCount> = failures
            .into_iter()
            .map(|((category, code), (count, example, _))| FailureCount { category, code, count, example })
            .collect();
        failures.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        let mut peak_hours: Vec<(u32, u64)> = hours.into_iter().collect();
        peak_hours.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        peak_hours.truncate(3);

        let backlog = self.backlog_now(now).await?;
        let holding = self.store.list(&holding()).await?;
        let prices = self.report_prices(&made.iter().chain(&holding).collect::<Vec<_>>()).await;
        let held = held_of(&holding, &prices);

        Ok(RequestReport {
            since: since.to_rfc3339(),
            until: now.to_rfc3339(),
            total: made.len() as u64,
            by_state,
            success_rate: (ended > 0).then(|| completed as f64 * 100.0 / ended as f64),
            time_to_complete: Durations {
                completed: durations.len() as u64,
                average_secs: (!durations.is_empty())
                    .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64),
                p50_secs: percentile(&durations, 0.5),
                p95_secs: percentile(&durations, 0.95),
            },
            failures,
            peak_hours,
            backlog,
            held,
            cost: cost(&made, &prices, now),
        })
    }
}

/// Each machine of `requests` priced from its launch until it went (its request's last change)
/// or until now.
fn cost(requests: &[Request], prices: &PriceTable, now: Timestamp) -> Cost {
    let mut c = Cost::default();
    let mut unpriced = std::collections::BTreeSet::new();
    for r in requests {
        let mut total = 0.0;
        for m in r.machines() {
            let Some(kind) = m.instance_type() else { continue };
            let Some(hourly) = prices.hourly(kind, m.price_type().unwrap_or(PriceType::Ondemand)) else {
                unpriced.insert(kind.to_owned());
                continue;
            };
            let from = m.launch_time().unwrap_or(r.created_at());
            let to = if m.is_alive() { now } else { r.updated_at().max(from) };
            total += hourly * (to.unix_millis().saturating_sub(from.unix_millis()).max(0) as f64) / 3_600_000.0;
        }
        c.total_usd += total;
        c.per_request.push((r.id().to_string(), total));
        for (k, v) in r.tags().iter() {
            *c.per_tag.entry(format!("{k}={v}")).or_insert(0.0) += total;
        }
    }
    c.per_request.sort_by(|a, b| b.1.total_cmp(&a.1));
    c.unpriced_types = unpriced.into_iter().collect();
    c
}

/// What the daemon's metrics and status page show of the store now: requests by kind and
/// state, what waits, what is held.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetOperatingFigures;

/// The answer of [`GetOperatingFigures`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatingFigures {
    /// How many requests of each kind are in each state.
    pub requests: Vec<(RequestKind, RequestState, u64)>,
    /// What waits now.
    pub backlog: Backlog,
    /// What is held now.
    pub held: Vec<Held>,
}

message!(query GetOperatingFigures => OperatingFigures);

impl Handler<GetOperatingFigures> for App {
    async fn handle(&self, _q: GetOperatingFigures) -> Result<OperatingFigures, AppError> {
        Ok(OperatingFigures {
            requests: self.store.count_by_state().await?,
            backlog: self.backlog_now(self.clock.now()).await?,
            held: self.held_now().await?,
        })
    }
}

impl App {
    /// The provision requests not yet finished, as of `now`.
    async fn backlog_now(&self, now: Timestamp) -> Result<Backlog, AppError> {
        let waiting = RequestFilter::waiting(Some(RequestKind::Provision));
        let mut backlog = Backlog::default();
        for r in self.store.list(&waiting).await? {
            match r.state() {
                RequestState::Pending => backlog.pending += 1,
                _ => backlog.in_progress += 1,
            }
            *backlog.by_priority.entry(r.effective_priority().to_string()).or_insert(0) += 1;
            if backlog.oldest_age_secs.is_none_or(|age| now.secs_since(r.created_at()) > age) {
                backlog.oldest_age_secs = Some(now.secs_since(r.created_at()));
                backlog.oldest_request_id = Some(r.id().to_string());
            }
        }
        Ok(backlog)
    }

    /// The machines provision requests hold now, by template, provider and instance type,
    /// priced by the configured table.
    async fn held_now(&self) -> Result<Vec<Held>, AppError> {
        Ok(held_of(&self.store.list(&holding()).await?, &self.settings.prices))
    }

    /// The configured price table, with the providers' current spot prices (AWS's spot market
    /// where it answers, within [`SPOT_PRICES_WITHIN`]) for the spot machines' types the table
    /// gives no spot price of: what the report prices by.
    async fn report_prices(&self, requests: &[&Request]) -> PriceTable {
        let mut prices = self.settings.prices.clone();
        let wanted: std::collections::BTreeSet<String> = requests
            .iter()
            .flat_map(|r| r.machines())
            .filter(|m| m.price_type() == Some(PriceType::Spot))
            .filter_map(|m| m.instance_type())
            .filter(|t| !prices.spot.contains_key(*t))
            .map(str::to_owned)
            .collect();
        if wanted.is_empty() {
            return prices;
        }
        let wanted: Vec<String> = wanted.into_iter().collect();
        for provider in self.providers() {
            match tokio::time::timeout(SPOT_PRICES_WITHIN, provider.spot_prices(&wanted)).await {
                Ok(Ok(found)) => {
                    for (t, p) in found {
                        prices.spot.entry(t).or_insert(p);
                    }
                }
                Ok(Err(e)) => {
                    tracing::info!(provider = %provider.name(), error = %e, "spot prices not read; the table's share of on-demand prices them")
                }
                Err(_) => {
                    tracing::info!(provider = %provider.name(), "spot prices not read in time; the table's share of on-demand prices them")
                }
            }
        }
        prices
    }
}

/// How long a report waits for a provider's spot prices.
const SPOT_PRICES_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// What lists the requests that hold machines now.
fn holding() -> RequestFilter {
    RequestFilter { kind: Some(RequestKind::Provision), holding: true, ..Default::default() }
}

/// The machines `requests` hold, by template, provider and instance type, priced by `prices`.
fn held_of(requests: &[Request], prices: &PriceTable) -> Vec<Held> {
    let mut held: BTreeMap<(String, String, String), (u64, Option<f64>)> = BTreeMap::new();
    for r in requests {
        for m in r.machines().iter().filter(|m| m.is_held()) {
            let kind = m.instance_type().unwrap_or("unknown").to_owned();
            let hourly = prices.hourly(&kind, m.price_type().unwrap_or(PriceType::Ondemand));
            let template = r.template().map(|t| t.id().to_string()).unwrap_or_default();
            let e = held.entry((template, m.provider().to_string(), kind)).or_insert((0, Some(0.0)));
            e.0 += 1;
            e.1 = e.1.zip(hourly).map(|(a, b)| a + b);
        }
    }
    held.into_iter()
        .map(|((template_id, provider, instance_type), (machines, hourly_usd))| Held {
            template_id,
            provider,
            instance_type,
            machines,
            hourly_usd,
        })
        .collect()
}

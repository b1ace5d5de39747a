//! Group commit: the writes of callers that save at the same moment go into one transaction.
//!
//! A caller encodes its requests into a [`Job`] (before it waits, on its own task) and queues
//! it. A caller that gets one of the store's write lanes (SQLite: one, as the database has one
//! writer) takes the queued jobs, writes them in one transaction and answers each. While the
//! lanes are busy the next transaction's jobs gather, so under load a transaction (its begin,
//! its statements, its commit and the database's flush) serves many callers, and with none
//! waiting a save costs what it did alone. Two lanes never write one request at once.
//!
//! Jobs never lose their own answer to another's failure: a transaction of several jobs that
//! fails is written again job by job. A caller that gives up before its job is taken takes the
//! job out of the queue: nothing of it is written. A lane holder that gives up (its caller was
//! dropped) puts the jobs it has not answered back in the queue for the next holder.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use ohf_app::{Fence, StoreError};
use ohf_domain::{Request, RequestKind};
use tokio::sync::oneshot;

use crate::codec::{encode_event, encode_request, touched_machines};

/// The most jobs one transaction takes.
const MOST: usize = 64;

/// One request's row as stored, and the rows that go with it.
pub(crate) struct Row {
    pub id: String,
    /// Not stored yet: inserted, not updated.
    pub new: bool,
    pub kind: &'static str,
    pub state: &'static str,
    pub template_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub needs_work: bool,
    pub capacity_held: i64,
    pub priority_rank: i64,
    pub provider: Option<String>,
    /// The version read; the row written is one on.
    pub version: i64,
    pub body: String,
    /// The machines its events brought or renamed: (machine id, name).
    pub machines: Vec<(String, Option<String>)>,
    pub events: Vec<Event>,
}

/// One event of a request, encoded.
pub(crate) struct Event {
    pub seq: i64,
    pub at: i64,
    pub kind: &'static str,
    pub body: String,
    pub actor: Option<String>,
}

/// One caller's writes: all of them or none.
pub(crate) struct Job {
    pub rows: Vec<Row>,
    /// With a fence, every stored request written must still be claimed by its worker.
    pub fence: Option<Fence>,
    /// A shared-state key inserted with the requests (a placement's hold); taken: a conflict.
    pub also: Option<(String, String)>,
}

impl Job {
    /// The writes of `batch`. A request twice in one batch is a conflict, as its second write
    /// would find the version its first made.
    pub fn of(batch: &[&Request], fence: Option<&Fence>, also: Option<(&str, &str)>) -> Result<Self, StoreError> {
        let mut seen = HashSet::new();
        let mut rows = Vec::with_capacity(batch.len());
        for r in batch {
            if !seen.insert(r.id().as_str()) {
                return Err(StoreError::Conflict { request_id: r.id().to_string() });
            }
            let machines = if r.kind() == RequestKind::Provision {
                touched_machines(r).iter().map(|m| (m.id().to_string(), m.name().map(str::to_owned))).collect()
            } else {
                Vec::new()
            };
            let events = r
                .uncommitted()
                .iter()
                .map(|e| {
                    Ok(Event {
                        seq: e.seq as i64,
                        at: e.at.unix_millis(),
                        kind: e.event.name(),
                        body: encode_event(&e.event)?,
                        actor: e.by.clone(),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            rows.push(Row {
                id: r.id().to_string(),
                new: r.version() == 0,
                kind: r.kind().as_str(),
                state: r.state().as_str(),
                template_id: r.template().map(|t| t.id().to_string()),
                created_at: r.created_at().unix_millis(),
                updated_at: r.updated_at().unix_millis(),
                needs_work: r.needs_work(),
                capacity_held: i64::from(r.capacity_held()),
                priority_rank: r.effective_priority().rank(),
                provider: r.provider().map(|p| p.to_string()),
                version: r.version() as i64,
                body: encode_request(r)?,
                machines,
                events,
            });
        }
        Ok(Self { rows, fence: fence.cloned(), also: also.map(|(k, v)| (k.to_owned(), v.to_owned())) })
    }

    /// The keys this job writes: two jobs that share one are never in one transaction.
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|r| r.id.as_str()).chain(self.also.as_ref().map(|(k, _)| k.as_str()))
    }
}

/// A queued job and where its answer goes.
struct Waiting {
    /// Its number in the order jobs came.
    seq: u64,
    job: Job,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The store's write queue and its write lanes.
pub(crate) struct Group {
    queue: Mutex<Queue>,
    lanes: tokio::sync::Semaphore,
    /// Told when a batch ends: the requests it wrote are free for another lane.
    ended: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// The keys the batches under way write.
    writing: HashSet<String>,
    next: u64,
}

/// A queued job's claim on its answer. Dropped before the job is taken, it takes the job
/// out of the queue.
pub(crate) struct Ticket<'a> {
    group: &'a Group,
    seq: u64,
    answer: oneshot::Receiver<Result<(), StoreError>>,
}

/// What a caller does next: take its answer, or write a batch (its own job among them or not).
pub(crate) enum Turn<'a> {
    Done(Result<(), StoreError>),
    Lead(Batch<'a>),
}

impl Group {
    /// A queue with `lanes` transactions at most under way at once.
    pub fn new(lanes: usize) -> Self {
        Self {
            queue: Mutex::default(),
            lanes: tokio::sync::Semaphore::new(lanes.max(1)),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// Queues `job`; [`Group::turn`] with the ticket says what comes of it.
    pub fn enqueue(&self, job: Job) -> Ticket<'_> {
        let (answer, rx) = oneshot::channel();
        let mut queue = self.lock();
        let seq = queue.next;
        queue.next += 1;
        queue.waiting.push_back(Waiting { seq, job, answer });
        Ticket { group: self, seq, answer: rx }
    }

    /// Waits until the ticket's job is answered or a lane is free; the lane's new holder
    /// gets queued jobs to write (its own among them, or not: then it waits again after).
    pub async fn turn(&self, ticket: &mut Ticket<'_>) -> Turn<'_> {
        loop {
            let lane = tokio::select! {
                biased;
                answer = &mut ticket.answer => return Turn::Done(answer.unwrap_or_else(|_| Err(unanswered()))),
                lane = self.lanes.acquire() => lane,
            };
            // Answered while the lane was being taken.
            if let Ok(answer) = ticket.answer.try_recv() {
                return Turn::Done(answer);
            }
            let Ok(lane) = lane else { return Turn::Done(Err(unanswered())) };
            // Heard from here on: a batch that ends after the queue was looked at.
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let (waiting, keys) = self.take();
            if !waiting.is_empty() {
                return Turn::Lead(Batch { group: self, waiting, keys, _lane: lane });
            }
            // Every job queued waits for a request another lane is writing (this caller's
            // among them, or its job is in that lane's batch).
            drop(lane);
            tokio::select! {
                biased;
                answer = &mut ticket.answer => return Turn::Done(answer.unwrap_or_else(|_| Err(unanswered()))),
                () = ended => {}
            }
        }
    }

    /// Up to [`MOST`] queued jobs, in order, none writing what another of them or a batch
    /// under way writes; and the keys they write, now marked as being written.
    fn take(&self) -> (Vec<Option<Waiting>>, Vec<String>) {
        let mut queue = self.lock();
        let Queue { waiting, writing, .. } = &mut *queue;
        let mut keys = Vec::new();
        let mut taken = Vec::new();
        let mut kept = VecDeque::new();
        while let Some(w) = waiting.pop_front() {
            if taken.len() < MOST && w.job.keys().all(|k| !writing.contains(k)) {
                for k in w.job.keys() {
                    writing.insert(k.to_owned());
                    keys.push(k.to_owned());
                }
                taken.push(Some(w));
            } else {
                kept.push_back(w);
            }
        }
        *waiting = kept;
        (taken, keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while the queue was held cannot leave it half-changed: take it as it is.
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Jobs taken from the queue, with a write lane.
pub(crate) struct Batch<'a> {
    group: &'a Group,
    waiting: Vec<Option<Waiting>>,
    /// What the jobs write.
    keys: Vec<String>,
    _lane: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut queue = self.group.lock();
        queue.waiting.retain(|w| w.seq != self.seq);
    }
}

impl Batch<'_> {
    /// The jobs, in the order they were queued.
    pub fn jobs(&self) -> Vec<&Job> {
        self.waiting.iter().flatten().map(|w| &w.job).collect()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// The `i`th job alone.
    pub fn job(&self, i: usize) -> Option<&Job> {
        self.waiting.get(i).and_then(Option::as_ref).map(|w| &w.job)
    }

    /// Gives the `i`th job its answer (a caller that gave up is not there to take it).
    pub fn answer(&mut self, i: usize, answer: Result<(), StoreError>) {
        if let Some(w) = self.waiting.get_mut(i).and_then(Option::take) {
            let _ = w.answer.send(answer);
        }
    }
}

impl Drop for Batch<'_> {
    /// Jobs not answered go back to the front of the queue, in their order (those whose
    /// callers have gone go nowhere), and what the batch wrote is free for another.
    fn drop(&mut self) {
        let left: Vec<Waiting> =
            self.waiting.iter_mut().filter_map(Option::take).filter(|w| !w.answer.is_closed()).collect();
        let mut queue = self.group.lock();
        for k in &self.keys {
            queue.writing.remove(k);
        }
        for w in left.into_iter().rev() {
            queue.waiting.push_front(w);
        }
        drop(queue);
        self.group.ended.notify_waiters();
    }
}

fn unanswered() -> StoreError {
    StoreError::Unavailable("the write was dropped before it was answered; try again".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> Job {
        Job { rows: vec![row(id)], fence: None, also: None }
    }

    fn row(id: &str) -> Row {
        Row {
            id: id.into(),
            new: true,
            kind: "provision",
            state: "pending",
            template_id: None,
            created_at: 0,
            updated_at: 0,
            needs_work: true,
            capacity_held: 0,
            priority_rank: 0,
            provider: None,
            version: 0,
            body: String::new(),
            machines: Vec::new(),
            events: Vec::new(),
        }
    }

    fn ids(batch: &Batch<'_>) -> Vec<String> {
        batch.jobs().iter().map(|j| j.rows[0].id.clone()).collect()
    }

    #[tokio::test]
    async fn the_lane_holder_takes_every_job_queued_and_answers_each() {
        let group = Group::new(1);
        let mut a = group.enqueue(job("a"));
        let mut b = group.enqueue(job("b"));
        let Turn::Lead(mut batch) = group.turn(&mut a).await else { panic!("a leads") };
        assert_eq!(ids(&batch), ["a", "b"]);
        batch.answer(0, Ok(()));
        batch.answer(1, Err(StoreError::Conflict { request_id: "b".into() }));
        drop(batch);
        assert!(matches!(group.turn(&mut a).await, Turn::Done(Ok(()))));
        assert!(matches!(group.turn(&mut b).await, Turn::Done(Err(StoreError::Conflict { .. }))));
    }

    #[tokio::test]
    async fn jobs_writing_the_same_request_go_in_different_transactions() {
        let group = Group::new(1);
        let mut a = group.enqueue(job("a"));
        let mut again = group.enqueue(job("a"));
        let _c = group.enqueue(job("c"));
        let Turn::Lead(mut batch) = group.turn(&mut a).await else { panic!("a leads") };
        assert_eq!(ids(&batch), ["a", "c"]);
        batch.answer(0, Ok(()));
        batch.answer(1, Ok(()));
        drop(batch);
        let Turn::Lead(batch) = group.turn(&mut again).await else { panic!("the second write of a leads next") };
        assert_eq!(ids(&batch), ["a"]);
    }

    #[tokio::test]
    async fn a_holder_that_gives_up_leaves_its_unanswered_jobs_to_the_next() {
        let group = Group::new(1);
        let mut a = group.enqueue(job("a"));
        let mut b = group.enqueue(job("b"));
        let Turn::Lead(mut batch) = group.turn(&mut a).await else { panic!("a leads") };
        batch.answer(0, Ok(()));
        drop(batch);
        let Turn::Lead(batch) = group.turn(&mut b).await else { panic!("b leads") };
        assert_eq!(ids(&batch), ["b"]);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_before_its_job_is_taken_takes_it_back() {
        let group = Group::new(1);
        let mut a = group.enqueue(job("a"));
        let gone = group.enqueue(job("gone"));
        let mut c = group.enqueue(job("c"));
        let Turn::Lead(mut batch) = group.turn(&mut a).await else { panic!("a leads") };
        assert_eq!(ids(&batch), ["a", "gone", "c"]);
        // Gone while its job is being written: the batch holds it, and nothing waits for it.
        drop(gone);
        batch.answer(0, Ok(()));
        drop(batch);
        let Turn::Lead(mut batch) = group.turn(&mut c).await else { panic!("c leads") };
        assert_eq!(ids(&batch), ["c"], "the job of a caller that left is not written again");
        batch.answer(0, Ok(()));
        drop(batch);

        let mut d = group.enqueue(job("d"));
        drop(group.enqueue(job("dropped at once")));
        let Turn::Lead(batch) = group.turn(&mut d).await else { panic!("d leads") };
        assert_eq!(ids(&batch), ["d"]);
    }

    #[tokio::test]
    async fn a_second_lane_writes_other_requests_meanwhile_and_never_the_same() {
        let group = Group::new(2);
        let mut a = group.enqueue(job("a"));
        let Turn::Lead(mut first) = group.turn(&mut a).await else { panic!("a leads") };
        let mut b = group.enqueue(job("b"));
        let Turn::Lead(mut second) = group.turn(&mut b).await else { panic!("b takes the second lane") };
        assert_eq!((ids(&first), ids(&second)), (vec!["a".to_owned()], vec!["b".to_owned()]));
        second.answer(0, Ok(()));
        drop(second);

        // A second write of a waits for the first, though a lane is free.
        let mut again = group.enqueue(job("a"));
        let waiter = group.turn(&mut again);
        tokio::pin!(waiter);
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), &mut waiter).await;
        assert!(early.is_err(), "a is being written");
        first.answer(0, Ok(()));
        drop(first);
        let Turn::Lead(batch) = waiter.await else { panic!("the second write of a leads once the first ended") };
        assert_eq!(ids(&batch), ["a"]);
    }

    #[tokio::test]
    async fn a_waiting_caller_is_answered_without_the_lane() {
        let group = Group::new(1);
        let mut a = group.enqueue(job("a"));
        let mut b = group.enqueue(job("b"));
        let Turn::Lead(mut batch) = group.turn(&mut a).await else { panic!("a leads") };
        let waiter = group.turn(&mut b);
        tokio::pin!(waiter);
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), &mut waiter).await;
        assert!(early.is_err(), "b waits: not answered, and the lane is held");
        batch.answer(1, Ok(()));
        assert!(matches!(waiter.await, Turn::Done(Ok(()))), "b's answer came while a still held the lane");
        batch.answer(0, Ok(()));
    }
}

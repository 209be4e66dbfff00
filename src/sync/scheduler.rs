//! The paging scheduler: keeps every one of `ZOHO_CONCURRENCY` streams busy whatever the distribution of the
//! window's deals, without spending more credits than the pass's bound.
//!
//! Keyset paging (`… and id > {cursor} order by id asc`) is sequential within one query, so concurrency comes
//! from cutting the window into slices, each paged on its own. Equal-length time slices leave streams idle when
//! the data is skewed (recent months, migrations), so slices are cut where the rows are:
//!
//! 1. **Probed cuts.** Zoho has counted the pass's rows (`N`). Each pass starts as `k` slices (its share of
//!    the streams) holding whole pages each: the cut before row `2000·j` is found by a one-row probe,
//!    `order by Modified_Time, id limit 1 offset 2000·j` (1 credit; all probes of a round at once). A slice is
//!    then a part of the window in its `(Modified_Time, id)` order: from one probed key (inclusive) to the next
//!    (exclusive), which inside one second divides the deals by id ([`Ties`]). Every stream reads the same
//!    number of full pages and no slice ends on a page of a few rows, so the pass costs what one stream would
//!    (`credits(L)` per page) plus `k − 1` probes. COQL's OFFSET reaches 100,000 rows, so cuts deeper than that
//!    are probed from the window's end (descending) or from a key an earlier round found (at most `MAX_PROBE_ROUNDS` rounds).
//! 2. **Idle-stream splits.** Whenever a page comes back while streams are idle (a probe was refused, a cut
//!    lay out of reach, the count was stale), its slice is split at the quantiles of the `Modified_Time`s that
//!    page carried (the rows just read are a sample of the slice), as many ways as there are idle streams and the
//!    credit bound allows. A slice whose page is in flight is never split; it is split when its page returns,
//!    before its next page is asked for.
//!
//! **Why a probed cut neither skips nor repeats a row.** Rows are ordered by `(Modified_Time, id)`, a total
//! order. Keys `K₁ < … < Kₖ₋₁` (sorted, whatever the probes returned) cut it into `[start, K₁)`, `[K₁, K₂)`, …,
//! `[Kₖ₋₁, end)`: every row of the window falls in exactly one, whether or not deals moved while the probes were
//! made (a moved deal only makes the parts uneven). Within a part, keyset paging by id reads each of its rows
//! once, as for a whole window. So the probes decide the balance, never which rows are read.
//!
//! **Why a split neither skips nor repeats a row.** A slice is a time range `[s, e)` and a cursor `c`: the rows
//! it still has to read are `{r : s ≤ t(r) < e, id(r) > c}` (the rows with `id ≤ c` in that range were read by
//! its earlier pages, in id order). Splitting at `m` (`s < m < e`) gives `[s, m)` and `[m, e)`, both with cursor
//! `c`; their remaining rows are `{s ≤ t < m, id > c}` and `{m ≤ t < e, id > c}`: disjoint (a row has one
//! `Modified_Time`, and `t < m` and `t ≥ m` exclude each other) and together exactly `{s ≤ t < e, id > c}`.
//! Applied to every split, the slices alive at any moment partition the rows not yet read, and each row is read
//! by the one slice whose range holds its time. This holds while rows keep their `Modified_Time`; an edit during
//! the run moves a deal past the window's end (fixed at the start, at Zoho's "now"), out of every slice, into the
//! next run's window. (A `Modified_Time` Zoho writes late, inside the window, may move a deal between slices, as
//! it could between the equal-length slices before; the next window's overlap covers that case.)
//!
//! **Credits.** A probed cut costs its probe (1 credit) and saves the partial page a slice would end on. A page
//! costs by its LIMIT (`coql_credits`). A slice reads full pages, then one page that is not
//! full: over its life it costs `credits(L) · (full pages + 1)`. Full pages hold `L` distinct rows each, so
//! the full pages of all slices together number at most `⌊R / L⌋` for `R` rows left; so whatever is spent next
//! is at most `credits(L) · (⌊R / L⌋ + slices alive)` (pages in flight counted as spent, their rows still in
//! `R`: an over-estimate). A split adds one slice alive, so it is made only while
//! `spent + credits(L) · (⌊R / L⌋ + slices alive + 1) ≤ cap`. A split costs no COUNT call. The cap is the pass's
//! share of the bound (see [`pass_cap`]); it holds for the rows counted at the start (rows added during
//! the run cost their own pages, as they would anyway).
//!
//! Testable without HTTP: [`PageSource`] is implemented by [`ZohoSource`] and by a scripted source in the tests.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::deal::Window;
use crate::error::Error;
use crate::zoho::client::{coql_credits, ZohoClient};
use crate::zoho::deals::{self, DealQuery, Key, RawPage, RawRecord, StageFilter, Ties, MAX_PROBE_OFFSET, PAGE_SIZE};

/// One page's request: which pass, which time range, after which id, how many rows at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub filter: StageFilter,
    pub window: Window,
    /// Where the part of `window` begins and ends inside a second (see [`Ties`]).
    pub ties: Ties,
    /// The keyset cursor: rows with a larger id (`"0"` for the first page).
    pub after: String,
    pub page_size: u32,
}

/// Where pages come from: Zoho's COQL in production, a scripted source in tests.
pub trait PageSource: Send + Sync + 'static {
    /// The rows of `request.filter` with `Modified_Time` in `request.window` and id above `request.after`, in id
    /// order, at most `request.page_size` of them.
    fn page(&self, request: PageRequest) -> impl Future<Output = Result<RawPage, crate::zoho::Error>> + Send;

    /// The key of the row at `offset` in the `(Modified_Time, id)` order (from the end when `descending`) of the
    /// rows of `filter` in the part of `window` that `ties` bounds; `None` past the end.
    fn key_at(
        &self,
        filter: StageFilter,
        window: Window,
        ties: Ties,
        offset: u64,
        descending: bool,
    ) -> impl Future<Output = Result<Option<Key>, crate::zoho::Error>> + Send;
}

/// Pages from Zoho: the won pass selects the run's columns, the not-won pass only what flags a row.
pub struct ZohoSource {
    pub client: Arc<ZohoClient>,
    pub won_stages: Vec<String>,
    /// The won-deal query's columns.
    pub columns: Vec<String>,
}

impl PageSource for ZohoSource {
    async fn page(&self, request: PageRequest) -> Result<RawPage, crate::zoho::Error> {
        let not_won_columns = ["id".to_owned(), "Stage".to_owned(), "Modified_Time".to_owned()];
        let columns: &[String] = match request.filter {
            StageFilter::Won => &self.columns,
            StageFilter::NotWon => &not_won_columns,
        };
        let q = DealQuery {
            columns,
            filter: request.filter,
            stages: &self.won_stages,
            window: request.window,
            page_size: request.page_size,
        };
        let query = deals::page_query_in(&q, &request.ties, &request.after);
        let page: RawPage = self.client.coql_as(&query, q.page_size).await?.unwrap_or_default();
        tracing::debug!(records = page.records.len(), more = page.more, after = %request.after, "COQL page");
        Ok(page)
    }

    async fn key_at(
        &self,
        filter: StageFilter,
        window: Window,
        ties: Ties,
        offset: u64,
        descending: bool,
    ) -> Result<Option<Key>, crate::zoho::Error> {
        deals::key_at(&self.client, filter, &self.won_stages, window, &ties, offset, descending).await
    }
}

/// One pass to page: its filter, and how many rows Zoho counted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub filter: StageFilter,
    pub expected: u64,
}

/// Rows per page for a pass of `expected` rows: the smallest LIMIT tier that holds them, up to COQL's maximum, so
/// a small nightly delta is one cheap page.
pub fn page_size(expected: u64) -> u32 {
    match expected {
        0..=200 => 200,
        201..=1000 => 1000,
        _ => PAGE_SIZE,
    }
}

/// The most a pass of `expected` rows may spend: the bound `⌈N/2000⌉·3 + concurrency + 10` less 5 for
/// the run's other calls (metadata, count, users, first page of deletions, reconciliation count), and never more
/// than the credit budget's estimate (`budget::pass_credits`), which `--max-credits` plans with.
pub fn pass_cap(expected: u64, concurrency: usize) -> u64 {
    let bound = expected.div_ceil(u64::from(PAGE_SIZE)) * 3 + concurrency as u64 + 5;
    bound.min(super::budget::pass_credits(expected, concurrency))
}

/// What a schedule did (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pages: u64,
    pub credits: u64,
    /// Slices ever made, first ones included.
    pub slices: u64,
    /// One-row probes that found where the first slices begin (1 credit each, in `credits`).
    pub probes: u64,
    /// Pages in flight at once, at most.
    pub max_in_flight: usize,
}

/// A part of the window still being read (a time range, cut inside a second by `ties`), with its cursor and
/// the `Modified_Time`s (epoch seconds) of its last page.
#[derive(Debug)]
struct Slice {
    pass: usize,
    window: Window,
    ties: Ties,
    after: String,
    sample: Vec<i64>,
    /// Rows a probed cut put in this slice (whole pages), when it was cut that way.
    planned: Option<u64>,
    /// Rows read so far.
    read: u64,
}

impl Slice {
    fn whole(pass: usize, window: Window) -> Slice {
        Slice { pass, window, ties: Ties::default(), after: "0".into(), sample: Vec::new(), planned: None, read: 0 }
    }
}

/// A pass's accounts, for the credit bound.
#[derive(Debug)]
struct PassState {
    filter: StageFilter,
    page_size: u32,
    expected: u64,
    read: u64,
    spent: u64,
    alive: u64,
    cap: u64,
    /// Pages in flight.
    in_flight: u64,
}

impl PassState {
    /// Whether one more slice keeps the worst case within the cap (see the module doc).
    fn may_split(&self) -> bool {
        let left = self.expected.saturating_sub(self.read);
        let worst = self.spent + coql_credits(self.page_size) * (left / u64::from(self.page_size) + self.alive + 1);
        worst <= self.cap
    }
}

/// Pages every pass over `window` with at most `streams` pages in flight, handing each page to `on_page` (which
/// returns `false` to stop: the receiver is gone). A page error stops everything and is returned.
///
/// A page that comes back gives its slice's next cursor at once (its ids and times are read from the records'
/// text), so that slice's next page is asked for before this one is mapped: mapping 2,000 records takes a
/// tenth of a second of CPU, which would otherwise sit between every two pages of a chain. Its records are
/// then turned into the caller's form by `map` on the blocking pool (pages are mapped in parallel, and the
/// runtime's workers stay free to read the answers of the pages in flight) and handed to `on_page` once mapped.
/// Pages in flight and pages held for mapping are at most `streams + 1` together (one more than when pages were
/// mapped in their fetching task): while that many are held, no new page is asked for, so memory stays bounded
/// when mapping is slower than Zoho (at zero latency). The blocking pool is capped
/// at the cores (`app::runtime`): each of its threads allocates from its own malloc arena, and uncapped, a
/// backfill of a million deals peaked 15-30 MiB higher.
///
/// `milestones` are told as paging nears its end, so that what comes after it can start while the last pages
/// download.
#[allow(clippy::too_many_arguments)] // the paging inputs, the two callbacks and the milestones; one call site
pub async fn run<S, M, T, F, Fut>(
    source: Arc<S>,
    window: Window,
    passes: &[Pass],
    streams: usize,
    mut milestones: Milestones,
    map: M,
    mut on_page: F,
) -> Result<Stats, Error>
where
    S: PageSource,
    M: Fn(StageFilter, Vec<RawRecord>) -> T + Send + Sync + 'static,
    T: Send + 'static,
    F: FnMut(StageFilter, T) -> Fut,
    Fut: Future<Output = bool>,
{
    let map = Arc::new(map);
    let streams = streams.max(1);
    let mut stats = Stats::default();
    let mut states: Vec<PassState> = passes
        .iter()
        .map(|p| PassState {
            filter: p.filter,
            page_size: page_size(p.expected),
            expected: p.expected,
            read: 0,
            spent: 0,
            alive: 1,
            cap: pass_cap(p.expected, streams),
            in_flight: 0,
        })
        .collect();
    // The passes' first slices, cut where whole pages fall (their probes all at once).
    let mut cuts = JoinSet::new();
    for (pass, pieces) in pieces_per_pass(&states, streams).into_iter().enumerate() {
        let (source, state) = (Arc::clone(&source), &states[pass]);
        let (filter, expected, page_size) = (state.filter, state.expected, state.page_size);
        cuts.spawn(
            async move { cut(&source, window, pass, filter, expected, page_size, pieces).await }.in_current_span(),
        );
    }
    let mut first: Vec<Vec<Slice>> = (0..states.len()).map(|_| Vec::new()).collect();
    while let Some(joined) = cuts.join_next().await {
        let (pass, slices, probes) = joined.map_err(|e| Error::internal_from("a probe task failed", e))?;
        states[pass].spent += probes * coql_credits(1);
        states[pass].alive = slices.len() as u64;
        stats.credits += probes * coql_credits(1);
        stats.probes += probes;
        first[pass] = slices;
    }
    let mut ready: VecDeque<Slice> = first.into_iter().flatten().collect();
    stats.slices = ready.len() as u64;
    let mut in_flight: JoinSet<(Slice, Result<Fetched, crate::zoho::Error>)> = JoinSet::new();
    // Pages that came back, being mapped; `unmapped`: the one that just came back, until the next pages are
    // asked for (its mapping task is spawned after their fetching tasks, so it runs after them).
    let mut mapping: JoinSet<(StageFilter, T)> = JoinSet::new();
    let mut unmapped: Option<(StageFilter, Vec<RawRecord>)> = None;

    loop {
        let free = free_streams(streams, in_flight.len(), mapping.len() + usize::from(unmapped.is_some()));
        split_for_idle(&mut ready, &mut states, free, &mut stats);
        launch(&mut ready, &mut states, &mut in_flight, free, &source, &mut stats);
        if let Some((filter, records)) = unmapped.take() {
            // On the blocking pool: mapping a page is milliseconds of CPU, and on the runtime's workers it would
            // hold up the answers of the pages in flight, and so the next pages' requests.
            let (map, span) = (Arc::clone(&map), tracing::Span::current());
            mapping.spawn_blocking(move || span.in_scope(|| (filter, map(filter, records))));
        }
        milestones.tell(&ready, &states, streams);
        if in_flight.is_empty() && mapping.is_empty() {
            // Nothing in flight and no page held: `launch` asked for every slice that waited, so none does.
            break;
        }
        tokio::select! {
            // A page that came back is seen first: its slice's next page is asked for before anything is mapped.
            biased;
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                // An error drops `in_flight` and `mapping`: the other pages are aborted, every page handed over
                // before it was taken.
                let (mut slice, page) = joined.map_err(|e| Error::internal_from("a page task failed", e))?;
                let page = page?;
                let pass = slice.pass;
                let state = &mut states[pass];
                state.in_flight -= 1;
                state.read += page.rows;
                slice.read += page.rows;
                match next_cursor(&page, &slice, state.page_size)? {
                    Some(next) => {
                        slice.after = next;
                        slice.sample = page.sample;
                        // To the front: its next page is asked for at once, or it is split first for idle streams.
                        ready.push_front(slice);
                    }
                    None => state.alive -= 1,
                }
                unmapped = Some((state.filter, page.records));
            }
            Some(joined) = mapping.join_next(), if !mapping.is_empty() => {
                let (filter, payload) = joined.map_err(|e| Error::internal_from("a page's mapping failed", e))?;
                // Handed over while the next pages download: Zoho's time to answer overlaps with loading.
                if !on_page(filter, payload).await {
                    in_flight.abort_all();
                    return Ok(stats);
                }
            }
        }
    }
    milestones.tell_all();
    tracing::debug!(pages = stats.pages, credits = stats.credits, slices = stats.slices, "paging done");
    Ok(stats)
}

/// What the scheduler keeps of a page that came back: what paging needs (how many rows, whether Zoho has more,
/// the largest id, the sampled times), read from the records' text, and the records, to be mapped.
struct Fetched {
    rows: u64,
    more: bool,
    /// The largest readable id of the page.
    last: Option<String>,
    /// The page's `Modified_Time`s within its slice (see [`sample_times`]).
    sample: Vec<i64>,
    records: Vec<RawRecord>,
}

/// How many more pages may be asked for: streams not in flight, while pages in flight and pages held for
/// mapping stay within `streams + 1` (see [`run`]).
fn free_streams(streams: usize, in_flight: usize, mapping: usize) -> usize {
    streams.saturating_sub(in_flight).min((streams + 1).saturating_sub(in_flight + mapping))
}

/// Rounds of pages (every stream asking for one) left when [`Milestones::near_end`] is told.
pub const NEAR_END_ROUNDS: u64 = 3;

/// What [`run`] tells as paging nears its end, each once (and every one still untold when paging ends; a
/// sender dropped untold means paging failed).
#[derive(Debug, Default)]
pub struct Milestones {
    /// Told when the pages still to be asked for fit in [`NEAR_END_ROUNDS`] rounds of every stream (by the
    /// passes' counts; at once when the whole window does): paging ends within about that many calls' latency.
    pub near_end: Option<tokio::sync::oneshot::Sender<()>>,
    /// Told once the pages in flight are expected to be the last ones: every pass's count is covered by what
    /// was read and what is being read, and no slice waits.
    pub all_asked: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Milestones {
    fn tell(&mut self, ready: &VecDeque<Slice>, states: &[PassState], streams: usize) {
        let unasked = |s: &PassState| s.expected.saturating_sub(s.read + s.in_flight * u64::from(s.page_size));
        let pages_left: u64 = states.iter().map(|s| unasked(s).div_ceil(u64::from(s.page_size))).sum();
        if pages_left <= NEAR_END_ROUNDS * streams as u64 {
            Self::send(&mut self.near_end);
        }
        if ready.is_empty() && pages_left == 0 {
            Self::send(&mut self.all_asked);
        }
    }

    fn tell_all(&mut self) {
        Self::send(&mut self.near_end);
        Self::send(&mut self.all_asked);
    }

    fn send(tx: &mut Option<tokio::sync::oneshot::Sender<()>>) {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    }
}

/// How many slices each pass starts with: the streams shared in proportion to the passes' pages (at least one
/// each), never more slices than pages, and never more than the pass's cap pays the probes for: the cut pages
/// cost what the pass's pages cost anyway (`credits(L)` per page of `L` rows, the last one included), and each
/// probe 1 credit more.
fn pieces_per_pass(states: &[PassState], streams: usize) -> Vec<usize> {
    let pages: Vec<u64> = states.iter().map(|s| s.expected.div_ceil(u64::from(s.page_size)).max(1)).collect();
    let total: u64 = pages.iter().sum();
    states
        .iter()
        .zip(&pages)
        .map(|(state, &pages)| {
            let share = (streams as u64 * pages / total).max(1);
            let paid = (state.cap + 1).saturating_sub(coql_credits(state.page_size) * pages);
            share.min(pages).min(paid).max(1) as usize
        })
        .collect()
}

/// Probe rounds at most: the first reaches 100,000 rows from either end of the window, each further one 100,000
/// rows beyond a key found before.
const MAX_PROBE_ROUNDS: usize = 4;

/// A pass's first slices: `pieces` parts of the window in its `(Modified_Time, id)` order, each holding whole
/// pages (the larger shares first, the last part the rest), so that every stream reads its part in full pages and
/// none ends on a page of a few rows. Where each part begins is found by a one-row probe at that row's offset in
/// that order (1 credit); COQL reaches 100,000 rows by offset, so a cut is probed from the window's start, from
/// its end (descending), or from a key an earlier round found. A cut that cannot be probed (too far from every
/// key after [`MAX_PROBE_ROUNDS`], past the end because deals left the window, or probes refused) is left out:
/// its neighbours form one slice, which the idle-stream splitting may cut later.
///
/// The cuts only balance the streams. Whatever keys the probes return (even if deals move while they are
/// made), the slices between consecutive keys partition the window (see the module doc), so no row is skipped or
/// read twice.
///
/// Returns the pass, its slices and the probes made.
async fn cut<S: PageSource>(
    source: &Arc<S>,
    window: Window,
    pass: usize,
    filter: StageFilter,
    expected: u64,
    page_size: u32,
    pieces: usize,
) -> (usize, Vec<Slice>, u64) {
    if pieces < 2 {
        return (pass, vec![Slice { planned: Some(expected), ..Slice::whole(pass, window) }], 0);
    }
    let page = u64::from(page_size);
    let pages = expected.div_ceil(page);
    let (base, extra) = (pages / pieces as u64, pages % pieces as u64);
    let mut targets = Vec::with_capacity(pieces - 1);
    let mut at = 0;
    for j in 0..pieces as u64 - 1 {
        at += (base + u64::from(j < extra)) * page;
        targets.push(at);
    }
    let (found, probes) = probe(source, window, filter, expected, &targets).await;
    let mut keys: Vec<(u64, Key)> = found.into_iter().collect();
    keys.sort_by(|a, b| a.1.at.cmp(&b.1.at).then_with(|| deals::cmp_ids(&a.1.id, &b.1.id)));
    keys.dedup_by(|a, b| a.1 == b.1);
    // Rows per slice as planned, when the keys came back in the order of their offsets (deals that moved while
    // probing can break that; the slices are then read without a plan).
    let in_order = keys.windows(2).all(|w| w[0].0 < w[1].0);
    let mut slices = Vec::with_capacity(keys.len() + 1);
    let mut from: Option<(u64, &Key)> = None;
    // Each key ends one slice and begins the next; `None` stands for the window's end.
    for (position, key) in keys.iter().map(|(p, k)| (*p, Some(k))).chain(std::iter::once((expected, None))) {
        let slice_window =
            Window { start: from.map_or(window.start, |(_, k)| k.at), end: key.map_or(window.end, |k| k.at) };
        let ties = Ties { from_id: from.map(|(_, k)| k.id.clone()), to_id: key.map(|k| k.id.clone()) };
        // The last slice is planned to hold the rest of the count.
        let planned = in_order.then(|| position.saturating_sub(from.map_or(0, |(p, _)| p)));
        slices.push(Slice {
            pass,
            window: slice_window,
            ties,
            after: "0".into(),
            sample: Vec::new(),
            planned,
            read: 0,
        });
        if let Some(key) = key {
            from = Some((position, key));
        }
    }
    tracing::debug!(pass, pieces, cuts = keys.len(), probes, "first slices cut");
    (pass, slices, probes)
}

/// The keys at `targets` (offsets in the `(Modified_Time, id)` order of the pass's `expected` rows), in rounds
/// of concurrent one-row probes; returns those found and how many probes were made. A refused or failed probe
/// ends the probing (the pages that follow meet any lasting error themselves).
async fn probe<S: PageSource>(
    source: &Arc<S>,
    window: Window,
    filter: StageFilter,
    expected: u64,
    targets: &[u64],
) -> (std::collections::BTreeMap<u64, Key>, u64) {
    let mut found = std::collections::BTreeMap::new();
    let mut probes = 0;
    let mut left = targets.to_vec();
    for _ in 0..MAX_PROBE_ROUNDS {
        let mut calls = JoinSet::new();
        let mut unreachable = Vec::new();
        for &target in &left {
            let below = found.range(..=target).next_back().map(|(p, k): (&u64, &Key)| (*p, k.clone()));
            let above = found.range(target + 1..).next().map(|(p, k): (&u64, &Key)| (*p, k.clone()));
            let (low, high) = (below.as_ref().map_or(0, |b| b.0), above.as_ref().map_or(expected, |a| a.0));
            let request = if target - low <= MAX_PROBE_OFFSET {
                // Ascending from the window's start, or from the key below (that key's row is offset 0).
                Some(match below {
                    Some((_, k)) => (Window { start: k.at, end: window.end }, Ties::from_key(&k), target - low, false),
                    None => (window, Ties::default(), target, false),
                })
            } else if high > target && high - 1 - target <= MAX_PROBE_OFFSET {
                // Descending from the window's end, or from the key above (the row before it is offset 0).
                Some(match above {
                    Some((_, k)) => {
                        let ties = Ties { from_id: None, to_id: Some(k.id.clone()) };
                        (Window { start: window.start, end: k.at }, ties, high - 1 - target, true)
                    }
                    None => (window, Ties::default(), high - 1 - target, true),
                })
            } else {
                None
            };
            match request {
                Some((part, ties, offset, descending)) => {
                    probes += 1;
                    let source = Arc::clone(source);
                    calls.spawn(
                        async move { (target, source.key_at(filter, part, ties, offset, descending).await) }
                            .in_current_span(),
                    );
                }
                None => unreachable.push(target),
            }
        }
        if calls.is_empty() {
            break;
        }
        let mut failed = false;
        // Every probe of the round is awaited (none is left running behind the pages).
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((target, Ok(Some(key)))) => {
                    found.insert(target, key);
                }
                // Past the end: deals left the window since it was counted.
                Ok((_, Ok(None))) => {}
                Ok((_, Err(e))) => {
                    tracing::warn!(error = %crate::error_chain::Chain(&e), "a probe for where to cut the window failed: paging without the remaining cuts");
                    failed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a probe task failed: paging without the remaining cuts");
                    failed = true;
                }
            }
        }
        left = unreachable;
        if failed || left.is_empty() {
            break;
        }
    }
    (found, probes)
}

/// Asks for the next page of up to `free` waiting slices.
fn launch<S: PageSource>(
    ready: &mut VecDeque<Slice>,
    states: &mut [PassState],
    in_flight: &mut JoinSet<(Slice, Result<Fetched, crate::zoho::Error>)>,
    free: usize,
    source: &Arc<S>,
    stats: &mut Stats,
) {
    for _ in 0..free {
        let Some(slice) = ready.pop_front() else { break };
        let state = &mut states[slice.pass];
        let request = PageRequest {
            filter: state.filter,
            window: slice.window,
            ties: slice.ties.clone(),
            after: slice.after.clone(),
            page_size: state.page_size,
        };
        let credits = coql_credits(state.page_size);
        state.spent += credits;
        state.in_flight += 1;
        stats.credits += credits;
        stats.pages += 1;
        let (source, window) = (Arc::clone(source), slice.window);
        in_flight.spawn(
            async move {
                let page = source.page(request).await.map(|page: RawPage| {
                    let keys: Vec<_> = page.records.iter().map(|r| deals::raw_key(r)).collect();
                    Fetched {
                        rows: page.records.len() as u64,
                        more: page.more,
                        last: keys.iter().filter_map(|(id, _)| id.clone()).max_by(|a, b| deals::cmp_ids(a, b)),
                        sample: sample_times(keys.iter().filter_map(|(_, at)| *at), window),
                        records: page.records,
                    }
                });
                (slice, page)
            }
            .in_current_span(),
        );
        stats.max_in_flight = stats.max_in_flight.max(in_flight.len());
    }
}

/// The cursor for a slice's next page, or `None` when this page was its last: not full and Zoho says no more, or
/// full and Zoho says no more while the slice has read all the rows its probed cut put in it. (A full page with
/// no more rows is otherwise asked past once: an answer's `more_records` is trusted only with the count behind
/// it.) The next key is the largest id of the page; a page whose ids cannot be read cannot be paged past.
fn next_cursor(page: &Fetched, slice: &Slice, page_size: u32) -> Result<Option<String>, Error> {
    let after = slice.after.as_str();
    let n = page.rows;
    let all_planned_read = slice.planned.is_some_and(|planned| slice.read >= planned);
    match page.last.clone() {
        Some(id) if page.more || (n >= u64::from(page_size) && !all_planned_read) => {
            if deals::cmp_ids(&id, after) != std::cmp::Ordering::Greater {
                return Err(malformed("keyset paging did not advance (ids not ascending)"));
            }
            Ok(Some(id))
        }
        None if n > 0 && page.more => Err(malformed("a page had no readable ids, so paging cannot continue")),
        _ => Ok(None),
    }
}

fn malformed(detail: &str) -> Error {
    Error::Zoho(crate::zoho::Error::malformed("coql", detail))
}

/// The `Modified_Time`s (epoch seconds) of a page's records that lie in `window`, sorted.
fn sample_times(times: impl Iterator<Item = DateTime<Utc>>, window: Window) -> Vec<i64> {
    let mut times: Vec<i64> = times.filter(|t| *t >= window.start && *t < window.end).map(|t| t.timestamp()).collect();
    times.sort_unstable();
    times
}

/// Splits waiting slices so that each of the `free` streams (not waiting for a page) has a slice, as far as each
/// pass's credit cap allows. The slice whose last page was fullest (the densest) is split first, into as many
/// pieces as streams are idle.
fn split_for_idle(ready: &mut VecDeque<Slice>, states: &mut [PassState], free: usize, stats: &mut Stats) {
    let mut idle = free.saturating_sub(ready.len());
    while idle > 0 {
        let candidate = ready
            .iter()
            .enumerate()
            // Only a slice that has returned a page has a sample of where its rows are: a pass's first page is
            // read whole-window, and the cuts follow what it shows.
            .filter(|(_, s)| !s.sample.is_empty() && states[s.pass].may_split())
            .filter(|(_, s)| (s.window.end - s.window.start).num_seconds() >= 2)
            .max_by_key(|(i, s)| (s.sample.len(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        let Some(index) = candidate else { return };
        let Some(slice) = ready.remove(index) else { return };
        let state = &mut states[slice.pass];
        let mut pieces = 1;
        while pieces <= idle && state.may_split() {
            state.alive += 1;
            pieces += 1;
        }
        let points = split_points(slice.window, &slice.sample, pieces);
        // Fewer distinct points than asked (a sample bunched on one second): the unused pieces are given back.
        state.alive -= (pieces - 1 - points.len()) as u64;
        if points.is_empty() {
            ready.push_front(slice);
            return;
        }
        idle -= points.len();
        stats.slices += points.len() as u64;
        let bounds: Vec<DateTime<Utc>> =
            std::iter::once(slice.window.start).chain(points).chain(std::iter::once(slice.window.end)).collect();
        let last = bounds.len() - 2;
        for (i, pair) in bounds.windows(2).enumerate().rev() {
            let window = Window { start: pair[0], end: pair[1] };
            let (from, to) = (window.start.timestamp(), window.end.timestamp());
            let sample = slice.sample.iter().copied().filter(|t| *t >= from && *t < to).collect();
            // The first piece keeps where the slice began inside its first second, the last where it ended
            // inside its last; the points between are whole seconds.
            let ties = Ties {
                from_id: if i == 0 { slice.ties.from_id.clone() } else { None },
                to_id: if i == last { slice.ties.to_id.clone() } else { None },
            };
            // Every piece keeps the slice's cursor: see the module doc for why nothing is skipped or repeated.
            ready.push_front(Slice {
                pass: slice.pass,
                window,
                ties,
                after: slice.after.clone(),
                sample,
                planned: None,
                read: 0,
            });
        }
    }
}

/// Up to `pieces - 1` whole-second points strictly inside `window`, ascending and distinct, that cut it into
/// pieces holding about as many of the `sample` times (sorted epoch seconds) each; equal lengths when the sample
/// says nothing.
pub fn split_points(window: Window, sample: &[i64], pieces: usize) -> Vec<DateTime<Utc>> {
    let (start, end) = (window.start.timestamp(), window.end.timestamp());
    let mut points: Vec<i64> = match sample.len() >= pieces {
        true => (1..pieces).map(|j| sample[j * sample.len() / pieces]).collect(),
        false => window.slices(pieces).iter().skip(1).map(|w| w.start.timestamp()).collect(),
    };
    points.retain(|p| *p > start && *p < end);
    points.dedup();
    points.into_iter().filter_map(|p| DateTime::<Utc>::from_timestamp(p, 0)).collect()
}

#[cfg(test)]
mod tests {
    //! The scheduler against a scripted source on tokio's paused clock: every call takes the same virtual
    //! latency, so "rounds" (virtual time over latency) count how many calls had to wait for each other. The
    //! clock is virtual and deterministic: these are counts of calls, not measurements of speed.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use serde_json::value::RawValue;
    use serde_json::Value;

    const LATENCY: Duration = Duration::from_millis(300);

    /// A deal as the scripted source holds it: id, `Modified_Time` (epoch seconds), whether it is won.
    #[derive(Debug, Clone, Copy)]
    struct Row {
        id: u64,
        t: i64,
        won: bool,
    }

    /// Answers pages from a list of rows, each after [`LATENCY`] (plus a jitter when seeded), and counts what it
    /// was asked: pages, credits, calls in flight at once. `grow` adds rows once that many pages were asked for.
    #[derive(Default)]
    struct Scripted {
        rows: Mutex<Vec<Row>>,
        grow: Mutex<Option<(u64, Vec<Row>)>>,
        jitter: Mutex<Option<fastrand::Rng>>,
        fail_at_page: Option<u64>,
        refuse_probes: bool,
        probes: AtomicU64,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        pages: AtomicU64,
        credits: AtomicU64,
    }

    impl Scripted {
        fn new(mut rows: Vec<Row>) -> Scripted {
            rows.sort_by_key(|r| r.id);
            Scripted { rows: Mutex::new(rows), ..Scripted::default() }
        }
    }

    /// The records as they came (the job maps them into deals here).
    fn as_read(_: StageFilter, records: Vec<RawRecord>) -> Vec<Value> {
        records.iter().map(|r| serde_json::from_str(r.get()).expect("a JSON record")).collect()
    }

    fn at(t: i64) -> String {
        DateTime::<Utc>::from_timestamp(t, 0).expect("in range").to_rfc3339()
    }

    impl PageSource for Scripted {
        async fn page(&self, req: PageRequest) -> Result<RawPage, crate::zoho::Error> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let asked = self.pages.fetch_add(1, Ordering::SeqCst) + 1;
            self.credits.fetch_add(coql_credits(req.page_size), Ordering::SeqCst);
            if let Some((_, mut extra)) = self.grow.lock().expect("lock").take_if(|(k, _)| asked >= *k) {
                let mut rows = self.rows.lock().expect("lock");
                rows.append(&mut extra);
                rows.sort_by_key(|r| r.id);
            }
            let jitter = self.jitter.lock().expect("lock").as_mut().map_or(0, |rng| rng.u64(0..200));
            tokio::time::sleep(LATENCY + Duration::from_millis(jitter)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail_at_page == Some(asked) {
                return Err(crate::zoho::Error::transient("coql", "scripted"));
            }
            let after: u64 = req.after.parse().expect("a numeric cursor");
            let rows = self.rows.lock().expect("lock");
            let first = rows.partition_point(|r| r.id <= after);
            let mut matching = rows[first..]
                .iter()
                .filter(|r| in_part(r, req.window, &req.ties) && r.won == (req.filter == StageFilter::Won));
            let records: Vec<RawRecord> = matching
                .by_ref()
                .take(req.page_size as usize)
                .map(|r| {
                    let record = serde_json::json!({"id": r.id.to_string(), "Modified_Time": at(r.t)});
                    RawValue::from_string(record.to_string()).expect("JSON")
                })
                .collect();
            let more = matching.next().is_some();
            Ok(RawPage { records, more })
        }

        async fn key_at(
            &self,
            filter: StageFilter,
            window: Window,
            ties: Ties,
            offset: u64,
            descending: bool,
        ) -> Result<Option<Key>, crate::zoho::Error> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            self.probes.fetch_add(1, Ordering::SeqCst);
            self.credits.fetch_add(coql_credits(1), Ordering::SeqCst);
            let jitter = self.jitter.lock().expect("lock").as_mut().map_or(0, |rng| rng.u64(0..200));
            tokio::time::sleep(LATENCY + Duration::from_millis(jitter)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.refuse_probes {
                return Err(crate::zoho::Error::Rejected {
                    endpoint: "coql".into(),
                    status: 400,
                    code: "SYNTAX_ERROR".into(),
                    message: "scripted".into(),
                });
            }
            let rows = self.rows.lock().expect("lock");
            let mut matching: Vec<&Row> =
                rows.iter().filter(|r| in_part(r, window, &ties) && r.won == (filter == StageFilter::Won)).collect();
            matching.sort_by_key(|r| (r.t, r.id));
            if descending {
                matching.reverse();
            }
            Ok(matching
                .get(offset as usize)
                .map(|r| Key { at: DateTime::<Utc>::from_timestamp(r.t, 0).expect("in range"), id: r.id.to_string() }))
        }
    }

    /// Whether `row` lies in the part of `window` that `ties` bounds (what the COQL of `deals::page_query_in`
    /// selects).
    fn in_part(row: &Row, window: Window, ties: &Ties) -> bool {
        let (start, end) = (window.start.timestamp(), window.end.timestamp());
        let id = |bound: &String| bound.parse::<u64>().expect("a numeric id");
        let lower = match &ties.from_id {
            None => row.t >= start,
            Some(from) => row.t > start || (row.t == start && row.id >= id(from)),
        };
        let upper = match &ties.to_id {
            None => row.t < end,
            Some(to) => row.t < end || (row.t == end && row.id < id(to)),
        };
        lower && upper
    }

    fn window() -> Window {
        let start = Utc.with_ymd_and_hms(2016, 1, 1, 0, 0, 0).single().expect("valid");
        Window { start, end: start + chrono::Duration::days(3650) }
    }

    /// What a schedule read, by pass and id, how often, and in how many rounds of calls.
    struct Outcome {
        stats: Stats,
        read: HashMap<(bool, u64), u32>,
        rounds: f64,
    }

    async fn schedule(source: &Arc<Scripted>, passes: &[Pass], streams: usize) -> Outcome {
        let started = tokio::time::Instant::now();
        let mut read: HashMap<(bool, u64), u32> = HashMap::new();
        let stats =
            run(Arc::clone(source), window(), passes, streams, Milestones::default(), as_read, |filter, records| {
                for r in &records {
                    let id = r["id"].as_str().and_then(|s| s.parse().ok()).expect("an id");
                    *read.entry((filter == StageFilter::Won, id)).or_default() += 1;
                }
                async { true }
            })
            .await
            .expect("paged");
        Outcome { stats, read, rounds: started.elapsed().as_secs_f64() / LATENCY.as_secs_f64() }
    }

    /// Every row of `rows` read exactly once, nothing else read.
    fn assert_each_row_read_once(outcome: &Outcome, rows: &[Row]) {
        for r in rows {
            assert_eq!(outcome.read.get(&(r.won, r.id)), Some(&1), "row {r:?} read once");
        }
        assert_eq!(outcome.read.len(), rows.len(), "nothing else read");
    }

    fn won(n: u64, time: impl Fn(u64) -> i64) -> Vec<Row> {
        // Ids are a permutation of the order in time: paging by id jumps around the window.
        (0..n).map(|i| Row { id: 1_000_000 + (i * 7919) % n, t: time(i), won: true }).collect()
    }

    fn secs(days: f64) -> i64 {
        window().start.timestamp() + (days * 86_400.0) as i64
    }

    #[tokio::test(start_paused = true)]
    async fn a_skewed_window_keeps_every_stream_busy_within_the_credit_bound() {
        // 95% of 21,000 deals in the last 30 seconds of ten years (a migration), the rest spread out. (At a
        // multiple of 2,000 the bound leaves room for three slices only: each slice may end on a page of one row.)
        let n = 21_000;
        let rows =
            won(n, |i| if i % 20 == 0 { secs(i as f64 * 3600.0 / n as f64) } else { secs(3620.0 + (i % 30) as f64) });
        let source = Arc::new(Scripted::new(rows.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &rows);
        assert!(source.max_in_flight.load(Ordering::SeqCst) <= 4, "never more than 4 calls at once");
        let credits = source.credits.load(Ordering::SeqCst);
        assert_eq!(credits, out.stats.credits);
        assert!(credits <= n.div_ceil(2000) * 3 + 4 + 5, "{credits} credits within the bound");
        // Equal-length slices would read 19,000 deals in one chain of 10 pages; split where the rows are, the
        // pages spread over the 4 streams.
        let pages = out.stats.pages as f64;
        assert!(out.rounds <= 1.0 + (pages / 4.0).ceil() + 2.0, "{} rounds for {pages} pages", out.rounds);
        assert_eq!(out.stats.max_in_flight, 4, "all four streams were used");
    }

    /// Most of `n` deals on a few seconds (a migration), the rest crowding towards the window's end, ids falling
    /// with time (as after an import of old deals): what equal-length slices and page samples both get wrong.
    fn migrated(n: u64) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let t = match i % 3 {
                    0 => secs(1000.0 + (i % 5) as f64 / 86_400.0),
                    _ => secs(3649.0 - 3600.0 * ((i as f64) / n as f64).powi(4)),
                };
                Row { id: 10_000_000 - i, t, won: true }
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn probed_cuts_give_every_stream_the_same_number_of_full_pages() {
        for streams in [4, 10] {
            let n = 70_001;
            let rows = migrated(n);
            let source = Arc::new(Scripted::new(rows.clone()));
            let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], streams).await;
            assert_each_row_read_once(&out, &rows);
            let pages = n.div_ceil(2000);
            assert_eq!(out.stats.pages, pages, "{streams} streams: no slice ends on an extra page: {:?}", out.stats);
            assert_eq!(out.stats.probes, streams as u64 - 1, "one probe per cut");
            assert_eq!(out.stats.credits, pages * 3 + out.stats.probes, "pages and probes, nothing else");
            assert!(out.stats.credits <= pages * 3 + streams as u64 + 10, "within the issue's bound");
            // One round of probes, then every stream reads its share of whole pages.
            let ideal = 1.0 + (pages as f64 / streams as f64).ceil();
            assert!(out.rounds <= ideal + 0.01, "{streams} streams: {} rounds, ideal {ideal}", out.rounds);
            assert_eq!(source.max_in_flight.load(Ordering::SeqCst), streams);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_caller_is_told_all_pages_are_asked_while_the_last_ones_download() {
        let n = 10_000;
        let rows = won(n, |i| secs(i as f64 * 0.3));
        let source = Arc::new(Scripted::new(rows));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = tokio::time::Instant::now();
        let told = tokio::spawn(async move { rx.await.map(|()| started.elapsed()) });
        let passes = [Pass { filter: StageFilter::Won, expected: n }];
        let milestones = Milestones { all_asked: Some(tx), ..Milestones::default() };
        run(Arc::clone(&source), window(), &passes, 4, milestones, as_read, |_, _| async { true })
            .await
            .expect("paged");
        let done = started.elapsed();
        let told = told.await.expect("joined").expect("told before the sender was dropped");
        // Told when the last pages were asked for: one page's latency before the end, not after it.
        assert_eq!(done - told, LATENCY, "told {told:?}, done {done:?}");
    }

    /// Told when the pages left to ask for fit in NEAR_END_ROUNDS rounds of every stream: about that many pages'
    /// latency before paging ends (plus the round in flight), and as paging begins (after the probes) when the
    /// whole window fits.
    #[tokio::test(start_paused = true)]
    async fn the_caller_is_told_paging_nears_its_end_a_few_rounds_before_it_does() {
        for (n, streams) in [(40_000, 2), (60_000, 3), (10_000, 4)] {
            let rows = won(n, |i| secs(i as f64 * 0.05));
            let source = Arc::new(Scripted::new(rows));
            let (near_tx, near_rx) = tokio::sync::oneshot::channel();
            let (all_tx, all_rx) = tokio::sync::oneshot::channel();
            let started = tokio::time::Instant::now();
            let near = tokio::spawn(async move { near_rx.await.map(|()| started.elapsed()) });
            let all = tokio::spawn(async move { all_rx.await.map(|()| started.elapsed()) });
            let passes = [Pass { filter: StageFilter::Won, expected: n }];
            let told = Milestones { near_end: Some(near_tx), all_asked: Some(all_tx) };
            run(Arc::clone(&source), window(), &passes, streams, told, as_read, |_, _| async { true })
                .await
                .expect("paged");
            let done = started.elapsed();
            let near = near.await.expect("joined").expect("near end told");
            let all = all.await.expect("joined").expect("all asked told");
            let pages = n.div_ceil(2000);
            if pages <= NEAR_END_ROUNDS * streams as u64 {
                assert!(near <= LATENCY, "{n} rows: the whole window fits, told as paging begins ({near:?})");
            } else {
                let rounds = (done - near).as_secs_f64() / LATENCY.as_secs_f64();
                let expected = NEAR_END_ROUNDS as f64 + 1.0;
                assert!(
                    (rounds - expected).abs() < 0.01,
                    "{n} rows, {streams} streams: told {rounds} rounds before the end"
                );
            }
            assert!(near <= all, "near the end before all pages are asked for");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_beyond_what_an_offset_reaches_are_probed_from_keys_found_before() {
        // 230,000 deals: the middle cut (row 116,000) is more than 100,000 rows from either end of the window.
        let n = 230_000;
        let rows = migrated(n);
        let source = Arc::new(Scripted::new(rows.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &rows);
        assert_eq!((out.stats.slices, out.stats.probes), (4, 3), "{:?}", out.stats);
        assert_eq!(out.stats.pages, n.div_ceil(2000), "every slice read in whole pages: {:?}", out.stats);
        assert!(out.rounds <= 2.0 + (115.0f64 / 4.0).ceil() + 0.01, "two probe rounds: {}", out.rounds);
    }

    #[tokio::test(start_paused = true)]
    async fn refused_probes_leave_the_window_to_the_idle_stream_splitting() {
        let n = 30_000;
        let rows = migrated(n);
        let source = Arc::new(Scripted { refuse_probes: true, ..Scripted::new(rows.clone()) });
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &rows);
        assert!(out.stats.credits <= pass_cap(n, 4), "{:?}", out.stats);
    }

    #[tokio::test(start_paused = true)]
    async fn a_uniform_window_is_read_once_in_about_pages_over_streams_rounds() {
        let n = 30_001;
        let rows = won(n, |i| secs(i as f64 * 3649.0 / n as f64));
        let source = Arc::new(Scripted::new(rows.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &rows);
        assert!(source.max_in_flight.load(Ordering::SeqCst) <= 4);
        assert!(out.stats.credits <= n.div_ceil(2000) * 3 + 4 + 5, "{:?}", out.stats);
        let pages = out.stats.pages as f64;
        assert!(out.rounds <= 1.0 + (pages / 4.0).ceil() + 2.0, "{} rounds for {pages} pages", out.rounds);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_window_costs_one_cheap_page() {
        let source = Arc::new(Scripted::new(Vec::new()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: 0 }], 4).await;
        assert!(out.read.is_empty());
        assert_eq!((out.stats.pages, out.stats.credits), (1, 1), "one page of LIMIT 200");
    }

    #[tokio::test(start_paused = true)]
    async fn empty_stretches_of_the_window_get_no_stream_of_their_own() {
        // Two bursts, nine years apart, and nothing between: equal-length slices would leave most streams with
        // nothing to read.
        let n = 16_000;
        let rows =
            won(n, |i| if i % 2 == 0 { secs(10.0 + (i % 50) as f64 / 10.0) } else { secs(3600.0 + (i % 40) as f64) });
        let source = Arc::new(Scripted::new(rows.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &rows);
        assert!(out.stats.credits <= n.div_ceil(2000) * 3 + 4 + 5, "{:?}", out.stats);
        let pages = out.stats.pages as f64;
        assert!(out.rounds <= 1.0 + (pages / 4.0).ceil() + 2.0, "{} rounds for {pages} pages", out.rounds);
    }

    #[tokio::test(start_paused = true)]
    async fn rows_that_appear_mid_run_above_every_cursor_are_read_once() {
        let n = 12_000;
        let rows = won(n, |i| secs(i as f64 * 3000.0 / n as f64));
        let source = Arc::new(Scripted::new(rows.clone()));
        // New deals get higher ids than any before them; these land all over the window after the 3rd page.
        let extra: Vec<Row> = (0..900).map(|i| Row { id: 9_000_000 + i, t: secs(i as f64 * 3.3), won: true }).collect();
        *source.grow.lock().expect("lock") = Some((3, extra.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: n }], 4).await;
        assert_each_row_read_once(&out, &[rows, extra].concat());
        assert!(source.max_in_flight.load(Ordering::SeqCst) <= 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_won_and_not_won_passes_share_the_streams_and_each_reads_its_own_rows() {
        let mut rows = won(9_000, |i| secs(i as f64 * 0.3));
        rows.extend((0..5_000u64).map(|i| Row { id: 5_000_000 + i, t: secs(3000.0 + i as f64 * 0.1), won: false }));
        let source = Arc::new(Scripted::new(rows.clone()));
        let passes =
            [Pass { filter: StageFilter::Won, expected: 9_000 }, Pass { filter: StageFilter::NotWon, expected: 5_000 }];
        let out = schedule(&source, &passes, 3).await;
        assert_each_row_read_once(&out, &rows);
        assert!(source.max_in_flight.load(Ordering::SeqCst) <= 3);
        assert!(out.stats.credits <= pass_cap(9_000, 3) + pass_cap(5_000, 3), "{:?}", out.stats);
    }

    #[tokio::test(start_paused = true)]
    async fn one_stream_reads_one_page_at_a_time() {
        let rows = won(7_000, |i| secs(i as f64 * 0.5));
        let source = Arc::new(Scripted::new(rows.clone()));
        let out = schedule(&source, &[Pass { filter: StageFilter::Won, expected: 7_000 }], 1).await;
        assert_each_row_read_once(&out, &rows);
        assert_eq!(source.max_in_flight.load(Ordering::SeqCst), 1);
        assert_eq!(out.stats.pages, 4, "no split with one stream: 3 full pages and the last");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slices_next_page_is_asked_for_before_its_last_page_is_mapped() {
        // One stream, so the only page that can be asked for while page 1 is mapped is that slice's page 2. The
        // first mapping waits (real time, bounded) until the source has been asked for a second page, and notes
        // how many pages were asked for when it ended: mapping before asking would note 1, after 10 s.
        let rows = won(7_000, |i| secs(i as f64 * 0.5));
        let source = Arc::new(Scripted::new(rows.clone()));
        let asked_when_mapped = Arc::new(Mutex::new(Vec::new()));
        let map = {
            let (source, asked_when_mapped) = (Arc::clone(&source), Arc::clone(&asked_when_mapped));
            move |filter, records| {
                let mut noted = asked_when_mapped.lock().expect("lock");
                if noted.is_empty() {
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while source.pages.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                noted.push(source.pages.load(Ordering::SeqCst));
                as_read(filter, records)
            }
        };
        let read = Arc::new(Mutex::new(Vec::new()));
        let stats = run(
            Arc::clone(&source),
            window(),
            &[Pass { filter: StageFilter::Won, expected: 7_000 }],
            1,
            Milestones::default(),
            map,
            |_, page| {
                read.lock().expect("lock").extend(page);
                async { true }
            },
        )
        .await
        .expect("paged");
        assert_eq!(stats.pages, 4);
        assert_eq!(read.lock().expect("lock").len(), 7_000, "every row handed over");
        assert_eq!(asked_when_mapped.lock().expect("lock")[0], 2, "page 2 was asked for while page 1 was mapped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_page_stops_the_schedule_with_its_error() {
        let rows = won(20_000, |i| secs(i as f64 * 0.1));
        let source = Arc::new(Scripted { fail_at_page: Some(3), ..Scripted::new(rows) });
        let result = run(
            Arc::clone(&source),
            window(),
            &[Pass { filter: StageFilter::Won, expected: 20_000 }],
            4,
            Milestones::default(),
            as_read,
            |_, _| async { true },
        )
        .await;
        assert!(matches!(result, Err(Error::Zoho(crate::zoho::Error::Transient { .. }))), "{result:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_page_still_lets_every_page_handed_over_before_it_be_taken() {
        let rows = won(40_000, |i| secs(i as f64 * 0.1));
        let source = Arc::new(Scripted { fail_at_page: Some(9), ..Scripted::new(rows) });
        let (handed, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let result = run(
            Arc::clone(&source),
            window(),
            &[Pass { filter: StageFilter::Won, expected: 40_000 }],
            4,
            Milestones::default(),
            as_read,
            |_, records| {
                handed.fetch_add(records.len() as u64, Ordering::SeqCst);
                let taken = Arc::clone(&taken);
                // A slow receiver: loading a page takes longer than Zoho takes to answer the next one.
                async move {
                    tokio::time::sleep(LATENCY * 2).await;
                    taken.fetch_add(records.len() as u64, Ordering::SeqCst);
                    true
                }
            },
        )
        .await;
        assert!(matches!(result, Err(Error::Zoho(crate::zoho::Error::Transient { .. }))), "{result:?}");
        let (handed, taken) = (handed.load(Ordering::SeqCst), taken.load(Ordering::SeqCst));
        assert!(handed > 0, "pages came back before the failing one");
        assert_eq!(taken, handed, "every page handed over was loaded before the error was returned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_is_gone_stops_the_schedule() {
        let rows = won(20_000, |i| secs(i as f64 * 0.1));
        let source = Arc::new(Scripted::new(rows));
        let stats = run(
            Arc::clone(&source),
            window(),
            &[Pass { filter: StageFilter::Won, expected: 20_000 }],
            4,
            Milestones::default(),
            as_read,
            |_, _| async { false },
        )
        .await
        .expect("stopped");
        assert!(stats.pages < 10, "stopped after the first page came back: {stats:?}");
    }

    /// Random windows: how many deals, how their times fall (uniform, skewed to the end, all on one second, a few
    /// tight clusters), how ids relate to time (shuffled, rising with time, falling), stale counts (other page
    /// sizes), one or two passes, 1 to 10 streams, and a jitter on every call so pages come back in a different
    /// order and the scheduler splits differently each time. A seeded generator: a failure names its seed.
    #[test]
    fn any_window_is_read_exactly_once_within_the_credit_bound_and_the_concurrency() {
        for seed in 0..120u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let n = match rng.u8(0..5) {
                0 => rng.u64(0..3),
                1 => rng.u64(3..400),
                2 => rng.u64(400..4_000),
                _ => rng.u64(4_000..24_000),
            };
            let span = (window().end - window().start).num_seconds();
            let clusters: Vec<i64> = (0..rng.i64(1..5)).map(|_| rng.i64(0..span)).collect();
            let shape = rng.u8(0..4);
            let mut times: Vec<i64> = (0..n)
                .map(|_| match shape {
                    0 => rng.i64(0..span),
                    1 => ((rng.f64().powi(6)) * span as f64) as i64,
                    2 => span / 3,
                    _ => (clusters[rng.usize(0..clusters.len())] + rng.i64(0..600)).min(span - 1),
                })
                .map(|t| window().start.timestamp() + if shape == 1 { span - 1 - t } else { t })
                .collect();
            let ids_by = rng.u8(0..3);
            if ids_by > 0 {
                times.sort_unstable();
            }
            // Distinct ids with random gaps.
            let mut next_id = 5_000_000u64;
            let mut ids: Vec<u64> = (0..n)
                .map(|_| {
                    next_id += rng.u64(1..4);
                    next_id
                })
                .collect();
            match ids_by {
                0 => rng.shuffle(&mut ids),
                1 => {}
                _ => ids.reverse(),
            }
            let two_passes = rng.bool();
            let rows: Vec<Row> =
                ids.iter().zip(&times).map(|(&id, &t)| Row { id, t, won: !two_passes || rng.u8(0..3) > 0 }).collect();
            let won_rows = rows.iter().filter(|r| r.won).count() as u64;
            let stale = rng.u8(0..4) == 0;
            let mut expected = |actual: u64| if stale { actual + rng.u64(0..3_000) } else { actual };
            let mut passes = vec![Pass { filter: StageFilter::Won, expected: expected(won_rows) }];
            if two_passes {
                passes.push(Pass { filter: StageFilter::NotWon, expected: expected(rows.len() as u64 - won_rows) });
            }
            let streams = rng.usize(1..=10);
            let refuse_probes = rng.u8(0..6) == 0;
            let source = Arc::new(Scripted {
                jitter: Mutex::new(Some(fastrand::Rng::with_seed(seed))),
                refuse_probes,
                ..Scripted::new(rows.clone())
            });

            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("a runtime");
            let out = runtime.block_on(schedule(&source, &passes, streams));
            let case = format!(
                "seed {seed}: {n} rows, shape {shape}, ids {ids_by}, {passes:?}, {streams} streams, refused probes {refuse_probes}"
            );
            for r in &rows {
                assert_eq!(out.read.get(&(r.won, r.id)), Some(&1), "{case}: row {r:?} read once");
            }
            assert_eq!(out.read.len(), rows.len(), "{case}: nothing else read");
            assert!(source.max_in_flight.load(Ordering::SeqCst) <= streams, "{case}: concurrency");
            assert_eq!(source.credits.load(Ordering::SeqCst), out.stats.credits, "{case}");
            let cap: u64 = passes.iter().map(|p| pass_cap(p.expected, streams)).sum();
            assert!(out.stats.credits <= cap, "{case}: {} credits > cap {cap}", out.stats.credits);
            for p in &passes {
                let bound = p.expected.div_ceil(2000) * 3 + streams as u64 + 10;
                assert!(pass_cap(p.expected, streams) <= bound, "{case}: the cap is within the issue's bound");
            }
        }
    }

    #[test]
    fn split_points_follow_the_sample_and_stay_strictly_inside_the_window() {
        let w = window();
        let s = w.start.timestamp();
        let sample: Vec<i64> = (0..100).map(|i| s + 1000 + i).collect();
        let points = split_points(w, &sample, 4);
        assert_eq!(points.iter().map(|p| p.timestamp() - s).collect::<Vec<_>>(), vec![1025, 1050, 1075]);
        // A sample bunched on the window's first second says nothing usable: no point.
        assert!(split_points(w, &[s; 50], 4).is_empty());
        // No sample: equal lengths.
        assert_eq!(split_points(w, &[], 2).len(), 1);
    }
}

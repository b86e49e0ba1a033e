//! Cascading delete in bounded steps (issues 15.3, 16.2, 16.3).
//!
//! A post-order depth-first walk of the doomed subtree emits every page after all of its
//! descendants, so every prefix of the emitted sequence is descendant-closed, and deleting a
//! prefix leaves an ancestor-closed remainder: a smaller tree, never an orphan. That is what
//! makes it safe to cut the cascade anywhere: between steps (to let other writers in), on a
//! failed write, or by a crash between two Delete frames (each is durable on its own).
//!
//! Each step walks without the writer lock until it has emitted up to `step_pages` pages,
//! then takes the lock, re-checks that each emitted page has no resident child outside what
//! it deletes (a put may have published one since the walk passed; puts publish under the
//! writer lock and decline when the parent is gone), logs one Delete frame for the checked
//! prefix and releases the lock. A page that fails the check, and everything emitted after
//! it, stays; the walk restarts from that page's root and finds the new child.
//!
//! Memory: the walk keeps one [`Frame`] (24 bytes: the page's fingerprint, the last child
//! fingerprint it descended into, and whether another child follows) per level of depth, never a page's children list and never
//! a key, so a chain of 1M pages costs 24 MiB of stack and a page with 1M children costs one
//! frame. On top of that, one step holds at most `step_pages` emitted pages (key plus ~80
//! bytes each, ~10 MiB for 65,536 pages of 64-byte keys), freed when the step ends.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::stats::Counters;
use super::Store;
use crate::error::{Error, Result};
use crate::key::{fingerprint, Fingerprint};
use crate::vlog::format::MAX_FRAME_RECORDS;

/// Pages one cascade step deletes at most (one Delete frame). The writer lock is held for the
/// check and frame of one step: over 1M descendants in release, a full 65,536-record step made
/// a concurrent put wait up to 486 ms, 4,096 pages 116 ms, for a cascade 15% slower in all
/// (docs/BENCHMARKS.md, 2026-12-04).
pub(crate) const CASCADE_STEP_PAGES: usize = 4_096;

/// One level of the walk: a page, and the fingerprint of the last child the walk descended
/// into (children are visited in fingerprint order, so that is the whole cursor). 24 bytes.
#[derive(Clone, Copy)]
struct Frame {
    fp: Fingerprint,
    after: Fingerprint,
    cursor: Cursor,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// No child visited yet.
    Start,
    /// Children up to `after` visited; more may follow.
    After,
    /// The scan that found `after` saw no other child: done once `after` is. A child
    /// published since is caught by the check under the writer lock.
    Last,
}

// The per-level cost stated in the module docs and docs/DESIGN.md.
const _: () = assert!(std::mem::size_of::<Frame>() == 24);

impl Frame {
    fn new(fp: Fingerprint) -> Self {
        Self {
            fp,
            after: 0,
            cursor: Cursor::Start,
        }
    }
}

/// A page the walk emitted: all of its descendants were emitted before it.
struct Emitted {
    key: Vec<u8>,
    fp: Fingerprint,
    /// The parent the walk reached it from; `None` for a root.
    parent: Option<Fingerprint>,
    /// Index into the roots of the root whose walk emitted it.
    root: usize,
}

/// The post-order walk over the subtrees of `roots`, resumable across steps.
struct Walk {
    roots: Vec<Vec<u8>>,
    /// The root whose subtree `stack` walks.
    root: usize,
    /// The path from `roots[root]` down to the page being explored.
    stack: Vec<Frame>,
    done: bool,
}

impl Walk {
    fn new(roots: Vec<Vec<u8>>) -> Self {
        let done = roots.is_empty();
        let mut walk = Self {
            roots,
            root: 0,
            stack: Vec::new(),
            done,
        };
        walk.restart_at(0);
        walk
    }

    /// Walks again from root `root` (after a step could not delete a page of its subtree).
    fn restart_at(&mut self, root: usize) {
        self.stack.clear();
        self.root = root;
        match self.roots.get(root) {
            Some(k) => self.stack.push(Frame::new(fingerprint(k))),
            None => self.done = true,
        }
    }

    /// Continues the walk until `step_pages` pages are emitted or every root is done. Runs
    /// without the writer lock: what it finds is re-checked under it.
    fn fill(&mut self, store: &Store, step_pages: usize) -> Result<Vec<Emitted>> {
        let inner = &store.inner;
        let mut emitted: Vec<Emitted> = Vec::new();
        // A page reachable twice within a step (one root inside another's subtree, or a root
        // given twice) is emitted once.
        let mut in_step: HashSet<Fingerprint> = HashSet::new();
        // Each iteration pushes a resident page, pops one or starts a root, and a page is
        // pushed at most once per step, so the residency set bounds the iterations; re-read
        // when passed, since puts may grow it meanwhile.
        let roots = self.roots.len();
        let bound = |store: &Store| 2 * (store.inner.residency.read().len() + roots) + 16;
        let mut iterations_max = bound(store);
        let mut iterations = 0usize;
        while emitted.len() < step_pages && !self.done {
            iterations += 1;
            if iterations > iterations_max {
                iterations_max = bound(store);
                if iterations > iterations_max {
                    return Err(Error::CascadeUnfinished(format!(
                        "the walk took {iterations} iterations in one step, more than the \
                         {iterations_max} its resident pages allow"
                    )));
                }
            }
            let Some(top) = self.stack.last().copied() else {
                self.restart_at(self.root + 1);
                continue;
            };
            let root_fp = fingerprint(&self.roots[self.root]);
            let child = match top.cursor {
                Cursor::Last => None,
                Cursor::Start | Cursor::After => {
                    let after = (top.cursor == Cursor::After).then_some(top.after);
                    inner.index.next_child(top.fp, after, |c| {
                        !in_step.contains(&c) && inner.residency.read().contains(c)
                    })?
                }
            };
            if let Some((c, more)) = child {
                if c == root_fp || c == top.fp {
                    // Only a parent link that loops back reaches the root again: each page
                    // has one parent, so a walk down can repeat a page only through its root.
                    return Err(Error::Corrupt {
                        path: "index".into(),
                        detail: format!(
                            "parent links form a cycle through {}",
                            crate::error::key_display(&self.roots[self.root])
                        ),
                    });
                }
                if let Some(f) = self.stack.last_mut() {
                    f.after = c;
                    f.cursor = if more { Cursor::After } else { Cursor::Last };
                }
                self.stack.push(Frame::new(c));
                continue;
            }
            self.stack.pop();
            let parent = self.stack.last().map(|f| f.fp);
            if !in_step.insert(top.fp) {
                continue;
            }
            let key = match parent {
                None => self.roots[self.root].clone(),
                Some(p) => match inner.index.child_link(p, top.fp)? {
                    Some(k) => k,
                    // Unlinked since the walk found it: deleted by someone else.
                    None => continue,
                },
            };
            emitted.push(Emitted {
                key,
                fp: top.fp,
                parent,
                root: self.root,
            });
        }
        Ok(emitted)
    }
}

impl Store {
    /// Deletes the `roots` for which `keep_root(i)` holds (checked under the writer lock,
    /// before anything is deleted) and every resident descendant of them; returns how many
    /// pages existed. Roots need not be resident: the resident descendants of a gone page go
    /// too (recovery drops the subtrees of pages whose segment is lost).
    ///
    /// The cascade runs in steps of at most `CASCADE_STEP_PAGES` pages and releases the writer
    /// lock between them, so other writers wait for one step, not the whole cascade; see the
    /// module docs for why no step, cut or crash leaves an orphan. A page re-put after
    /// `keep_root` was checked, and before its step, goes too: a miss, never wrong bytes.
    ///
    /// # Errors
    /// An I/O failure writing a Delete frame, [`Error::Corrupt`] if parent links form a cycle,
    /// or [`Error::CascadeUnfinished`] if concurrent puts under the subtree outran the step
    /// bound. Whatever was deleted before the error stays deleted, and no orphan is left.
    pub(super) fn delete_with_descendants(
        &self,
        roots: Vec<Vec<u8>>,
        keep_root: impl Fn(usize) -> Result<bool>,
    ) -> Result<usize> {
        let inner = &self.inner;
        let roots = {
            let _w = inner.vlog.lock_writer();
            let mut doomed = Vec::with_capacity(roots.len());
            for (i, k) in roots.into_iter().enumerate() {
                if keep_root(i)? {
                    doomed.push(k);
                }
            }
            doomed
        };
        let step_pages = inner
            .cascade_step_pages
            .load(Ordering::Relaxed)
            .clamp(1, MAX_FRAME_RECORDS);
        // Every step without a cut deletes a full step of pages that were resident when it
        // walked; a cut needs a page published under the subtree since. So the steps are
        // bounded by what is resident now plus what puts add; the slack is for those puts.
        let resident_pages = inner.residency.read().len() + roots.len();
        let steps_max = 64 + 2 * resident_pages.div_ceil(step_pages);
        let mut walk = Walk::new(roots);
        let mut removed = 0usize;
        let mut steps = 0usize;
        let started = std::time::Instant::now();
        let mut locked_us_total = 0u64;
        let mut locked_us_max = 0u64;
        loop {
            let batch = walk.fill(self, step_pages)?;
            if batch.is_empty() {
                debug_assert!(walk.done, "a step emitted nothing before the walk ended");
                break;
            }
            steps += 1;
            if steps > steps_max {
                return Err(Error::CascadeUnfinished(format!(
                    "{removed} pages removed in {steps_max} steps of {step_pages}; puts under \
                     the subtree keep extending it"
                )));
            }
            let step_started = std::time::Instant::now();
            let (n, cut) = self.delete_step(&batch)?;
            let locked_us = super::elapsed_us(step_started);
            locked_us_total += locked_us;
            locked_us_max = locked_us_max.max(locked_us);
            removed += n;
            inner.after_publish()?;
            if let Some(i) = cut {
                walk.done = false;
                walk.restart_at(batch[i].root);
            }
        }
        tracing::debug!(
            removed,
            steps,
            total_us = super::elapsed_us(started),
            locked_us_total,
            locked_us_max,
            "cascading delete done"
        );
        Ok(removed)
    }

    /// Under the writer lock: deletes the longest prefix of `batch` in which every page's
    /// resident children are all deleted before it, in one Delete frame. Returns how many
    /// pages it deleted and where it stopped (`None`: the whole batch went).
    fn delete_step(&self, batch: &[Emitted]) -> Result<(usize, Option<usize>)> {
        let inner = &self.inner;
        let mut w = inner.vlog.lock_writer();
        let mut found: Vec<(&[u8], Fingerprint)> = Vec::with_capacity(batch.len());
        let mut deleted: HashSet<Fingerprint> = HashSet::with_capacity(batch.len());
        // Children among `found`, per parent: what a page's resident-children count must
        // not exceed for it to go.
        let mut deleted_children: HashMap<Fingerprint, u32> = HashMap::new();
        let mut cut = None;
        for (i, e) in batch.iter().enumerate() {
            let Some(slot) = inner.residency.read().slot(e.fp) else {
                continue; // gone since the walk: deleted or evicted by someone else
            };
            let Some(rec) = inner.index.get(&e.key)? else {
                continue;
            };
            if e.parent.is_some_and(|p| p != rec.parent_fp) {
                continue; // deleted and put again under another parent: not ours any more
            }
            let ours = deleted_children.get(&e.fp).copied().unwrap_or(0);
            // The count is exact for children published while the page was resident (every
            // concurrent put); it can be high after a rebuild, so a high count is settled by
            // the links themselves.
            if slot.children > ours && !self.children_all_in(e.fp, &deleted)? {
                cut = Some(i);
                break;
            }
            found.push((&e.key, rec.parent_fp));
            deleted.insert(e.fp);
            *deleted_children.entry(rec.parent_fp).or_default() += 1;
        }
        if found.is_empty() {
            return Ok((0, cut));
        }
        let removed = inner.log_deletes(&mut w, &found)?.len();
        Counters::add(&inner.counters.deletes, removed as u64);
        Ok((removed, cut))
    }

    /// Whether every resident child linked under `parent` is in `set`. Under the writer lock,
    /// so no put publishes a child meanwhile.
    fn children_all_in(&self, parent: Fingerprint, set: &HashSet<Fingerprint>) -> Result<bool> {
        let outside = self.inner.index.next_child(parent, None, |c| {
            !set.contains(&c) && self.inner.residency.read().contains(c)
        })?;
        Ok(outside.is_none())
    }

    /// Sets the pages per cascade step (clamped to 1..=65,536), so tests exercise the
    /// multi-step path on small trees.
    #[doc(hidden)]
    pub fn set_cascade_step_pages(&self, pages: usize) {
        self.inner
            .cascade_step_pages
            .store(pages.clamp(1, MAX_FRAME_RECORDS), Ordering::Relaxed);
    }
}

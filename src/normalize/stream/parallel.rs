//! NDJSON normalized on worker threads, written in input order.
//!
//! Parsing, hashing and writing a record is nearly all of the command's work, and one
//! record's document does not depend on another's (apart from twins, which [`Tally`]
//! settles in order). So the reading thread copies lines into batches, hands them round
//! robin to the workers and takes the finished batches back in the same order: no reorder
//! buffer, and the output is byte for byte the one-thread output.
//!
//! Memory stays bounded: at most two batches per worker are out, and no more than
//! [`IN_FLIGHT_BYTES`] of input unless one batch alone is larger (a record near the limit
//! then waits until nothing else is out). Before a read that would block, every line read
//! so far is written and flushed, so `tail -f … |` still prints line by line.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use super::input::{Input, Line};
use super::work::{Item, Tally, Work};
use super::{Output, RecordProblem, StreamError, StreamLimits};

/// A batch is handed out once it holds this many records…
const BATCH_RECORDS: usize = 256;
/// …or this many bytes of input.
const BATCH_BYTES: usize = 256 << 10;
/// Input bytes out with the workers at most (unless a single batch is larger).
const IN_FLIGHT_BYTES: usize = 4 << 20;
/// A batch whose buffers grew past this (a long record) is not kept for reuse.
const KEEP_BATCH_BYTES: usize = 4 << 20;

/// One line of a batch.
enum Entry {
    Text { range: Range<usize>, line: u64 },
    Problem { line: u64, problem: RecordProblem },
}

/// Lines out to a worker and, on the way back, their documents.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    entries: Vec<Entry>,
    out: Vec<u8>,
    items: Vec<Item>,
}

impl Batch {
    fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
        self.out.clear();
        self.items.clear();
    }

    fn small(&self) -> bool {
        self.text.capacity() + self.out.capacity() <= KEEP_BATCH_BYTES
    }
}

/// A worker: batches in, the same batches with their documents out, until the reading
/// thread hangs up.
fn normalize_batches(work: &Work<'_>, jobs: Receiver<Batch>, done: SyncSender<Batch>) {
    for mut batch in jobs {
        let Batch {
            text,
            entries,
            out,
            items,
        } = &mut batch;
        for entry in entries.drain(..) {
            match entry {
                Entry::Text { range, line } => {
                    work.line(&text[range], line, false, out, items);
                }
                Entry::Problem { line, problem } => items.push(Item::Problem { line, problem }),
            }
        }
        if done.send(batch).is_err() {
            return;
        }
    }
}

/// The reading thread's side: batches being filled, out, and back.
struct Pool<'scope> {
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    jobs: Vec<SyncSender<Batch>>,
    done: Vec<Receiver<Batch>>,
    /// The worker the next batch goes to.
    next: usize,
    /// Batches out, oldest first: (worker, input bytes).
    out: VecDeque<(usize, usize)>,
    out_bytes: usize,
    filling: Batch,
    spare: Vec<Batch>,
    /// A worker stopped (a panic): the stream ends with [`StreamError::Worker`].
    broken: bool,
}

impl<'scope> Pool<'scope> {
    fn start<'env>(scope: &'scope Scope<'scope, 'env>, work: &'env Work<'env>, n: usize) -> Self {
        let mut workers = Vec::with_capacity(n);
        let (mut jobs, mut done) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let (job_tx, job_rx) = sync_channel(2);
            let (done_tx, done_rx) = sync_channel(2);
            workers.push(scope.spawn(move || normalize_batches(work, job_rx, done_tx)));
            jobs.push(job_tx);
            done.push(done_rx);
        }
        Pool {
            workers,
            jobs,
            done,
            next: 0,
            out: VecDeque::new(),
            out_bytes: 0,
            filling: Batch::default(),
            spare: Vec::new(),
            broken: false,
        }
    }

    /// Add one line (a copy of its text) to the batch being filled.
    fn push_text<W: Write>(
        &mut self,
        text: &[u8],
        line: u64,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        let start = self.filling.text.len();
        self.filling.text.extend_from_slice(text);
        let range = start..self.filling.text.len();
        self.push(Entry::Text { range, line }, output, tally)
    }

    fn push<W: Write>(
        &mut self,
        entry: Entry,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        self.filling.entries.push(entry);
        if self.filling.entries.len() >= BATCH_RECORDS || self.filling.text.len() >= BATCH_BYTES {
            self.hand_out(output, tally)?;
        }
        Ok(())
    }

    /// Send the batch being filled to the next worker, first taking back what must come
    /// back to stay within the bounds.
    fn hand_out<W: Write>(
        &mut self,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        if self.filling.entries.is_empty() {
            return Ok(());
        }
        let bytes = self.filling.text.len();
        while !self.out.is_empty()
            && (self.out.len() >= 2 * self.jobs.len() || self.out_bytes + bytes > IN_FLIGHT_BYTES)
        {
            self.take_back(true, output, tally)?;
        }
        let next = self.spare.pop().unwrap_or_default();
        let batch = std::mem::replace(&mut self.filling, next);
        if self.jobs[self.next].send(batch).is_err() {
            return Err(self.broke());
        }
        self.out.push_back((self.next, bytes));
        self.out_bytes += bytes;
        self.next = (self.next + 1) % self.jobs.len();
        Ok(())
    }

    /// Take back the oldest batch out (waiting for it if `wait`), settle it and write its
    /// documents. `false`: none out, or not finished and not waited for.
    fn take_back<W: Write>(
        &mut self,
        wait: bool,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<bool, StreamError> {
        let Some(&(worker, bytes)) = self.out.front() else {
            return Ok(false);
        };
        let received = if wait {
            self.done[worker].recv().ok()
        } else {
            match self.done[worker].try_recv() {
                Ok(batch) => Some(batch),
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => None,
            }
        };
        let Some(mut batch) = received else {
            return Err(self.broke());
        };
        self.out.pop_front();
        self.out_bytes -= bytes;
        tally.settle(batch.items.drain(..), &mut batch.out);
        output.borrow_mut().append(&batch.out);
        if batch.small() {
            batch.clear();
            self.spare.push(batch);
        }
        Ok(true)
    }

    /// Everything read so far, settled and written.
    fn drain<W: Write>(
        &mut self,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        self.hand_out(output, tally)?;
        while self.take_back(true, output, tally)? {}
        Ok(())
    }

    /// Before a read of the input: if it may block, everything read so far goes out and is
    /// flushed; if not, finished batches are taken back without waiting.
    fn before_read<W: Write>(
        &mut self,
        ready: Option<fn() -> bool>,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> io::Result<()> {
        let will_return = ready.is_some_and(|ready| ready());
        let settled = if will_return {
            self.take_back_finished(output, tally)
        } else {
            self.drain(output, tally)
        };
        if settled.is_err() {
            return Err(io::Error::other("a worker stopped"));
        }
        if will_return {
            return Ok(());
        }
        output.borrow_mut().flush_before_read()
    }

    /// The batches already finished, oldest first, without waiting for the others.
    fn take_back_finished<W: Write>(
        &mut self,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        while self.take_back(false, output, tally)? {}
        Ok(())
    }

    /// Everything settled and written; the workers told to stop and waited for (one that
    /// panicked is [`StreamError::Worker`], not a panic of the whole command).
    fn finish<W: Write>(
        mut self,
        output: &RefCell<Output<W>>,
        tally: &mut Tally<'_>,
    ) -> Result<(), StreamError> {
        let drained = self.drain(output, tally);
        self.jobs.clear();
        let mut joined = Ok(());
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                joined = Err(StreamError::Worker);
            }
        }
        drained.and(joined)
    }

    fn broke(&mut self) -> StreamError {
        self.broken = true;
        StreamError::Worker
    }
}

impl Drop for Pool<'_> {
    /// On every way out (an error too): the workers hung up on and waited for, so that a
    /// panicked one is never re-raised by the scope.
    fn drop(&mut self) {
        self.jobs.clear();
        self.done.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Read the rest of `input` (NDJSON: pages on one line only) and normalize it on
/// `limits.workers` threads of `scope`.
pub(super) fn run<'scope, 'env, R: Read, W: Write>(
    scope: &'scope Scope<'scope, 'env>,
    work: &'env Work<'env>,
    limits: &StreamLimits,
    input: &mut Input<R>,
    output: &RefCell<Output<W>>,
    tally: &mut Tally<'_>,
) -> Result<(), StreamError> {
    let mut pool = Pool::start(scope, work, limits.workers);
    loop {
        let next = input.next_line(&mut || pool.before_read(limits.input_ready, output, tally));
        let line = match next {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) if pool.broken => return Err(StreamError::Worker),
            Err(e) => return Err(output.borrow_mut().read_error(e)),
        };
        let number = input.line_number();
        match line {
            Line::TooLong { bytes } => {
                let problem = RecordProblem::TooLong {
                    bytes,
                    limit: limits.max_record_bytes,
                };
                let entry = Entry::Problem {
                    line: number,
                    problem,
                };
                pool.push(entry, output, tally)?;
            }
            Line::Text(range) => pool.push_text(input.bytes(range), number, output, tally)?,
        }
        if let Some(e) = output.borrow_mut().failed.take() {
            return Err(StreamError::Write(e));
        }
    }
    pool.finish(output, tally)
}

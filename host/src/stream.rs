//! Serving a stream of request lines: what `tollgate gate` does between its standard input and
//! its standard output.
//!
//! A reader thread splits the input into lines and reads each into a [`RequestLine`], with the
//! digest of its arguments that its audit record holds; the calling thread decides them with [`Gate::decide_batch`] (every record appended before any decision is
//! returned) and writes one decision line per request, flushing after each batch. The two run at
//! once, so reading the next lines costs the gate no time, yet nothing is decided before it is
//! read and nothing is answered before its record is in the log.
//!
//! A batch is the next line and every further line already waiting in the input's buffer (at
//! most [`BATCH`] lines or [`BATCH_BYTES`] bytes): a live agent gets each answer at once, a piped
//! file is decided in batches. At most two batches wait between the threads.

use crate::audit_log::AuditStore;
use crate::clock::Clock;
use crate::gate::Gate;
use crate::protocol::{self, RequestLine, MAX_LINE};
use crate::store::StateStore;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;

/// The most request lines decided (and appended to the log) together.
pub const BATCH: usize = 256;
/// A batch ends once this many bytes of input are in it (so waiting batches hold little memory).
pub const BATCH_BYTES: usize = 1 << 20;
/// The input buffer: a batch is what it holds, so it holds a full batch of typical lines.
const BUFFER: usize = 1 << 18;

/// How a stream ended.
#[derive(Debug)]
pub enum Ended {
    /// The input closed; every line read was decided, audited and answered.
    Closed,
    /// Reading the input failed; every line read before was answered.
    Input(std::io::Error),
    /// Writing a decision line failed; nothing more was decided.
    Output(std::io::Error),
    /// The audit log or the state could not be written: the gate allows nothing more.
    AuditFailed,
}

/// Decides every request line of `input`, writing each decision line to `output`, until the
/// input closes or something fails. The input is read on a thread of its own (it is `'static`:
/// when the output or the audit log fails, `serve` returns at once and leaves that thread to end
/// with the input or the process); where no thread can be started, lines are read in turn.
pub fn serve<C, S, A, R, W>(gate: &Gate<'_, C, S, A>, input: R, output: &mut W) -> Ended
where
    C: Clock,
    S: StateStore,
    A: AuditStore,
    R: Read + Send + 'static,
    W: Write,
{
    let (sender, batches) = mpsc::sync_channel::<std::io::Result<Batch>>(1);
    // Decided batches go back to the reader, which made them, to be freed there: memory freed
    // by the thread that did not allocate it costs the allocator more.
    let (decided, to_free) = mpsc::channel::<Batch>();
    // The thread owns the input; should it fail to start, its closure (and the input) comes back.
    let input = std::sync::Arc::new(std::sync::Mutex::new(Some(input)));
    let shared = std::sync::Arc::clone(&input);
    let spawned = std::thread::Builder::new()
        .name("tollgate-reader".to_owned())
        .spawn(move || {
            let Some(input) = shared.lock().ok().and_then(|mut i| i.take()) else {
                return;
            };
            let mut input = BufReader::with_capacity(BUFFER, input);
            let mut lines = Lines::default();
            loop {
                while let Ok(old) = to_free.try_recv() {
                    drop(old);
                }
                let batch = lines.next_batch(&mut input);
                let done = !matches!(&batch, Ok(batch) if !batch.requests.is_empty());
                if sender.send(batch).is_err() || done {
                    return;
                }
            }
        });
    if spawned.is_err() {
        let Some(input) = input.lock().ok().and_then(|mut i| i.take()) else {
            return Ended::Input(std::io::Error::other("the input was lost"));
        };
        let mut input = BufReader::with_capacity(BUFFER, input);
        let mut lines = Lines::default();
        return answer_all(gate, || Some(lines.next_batch(&mut input)), drop, output);
    }
    let recycle = |batch| {
        let _ = decided.send(batch);
    };
    answer_all(gate, || batches.recv().ok(), recycle, output)
}

/// Decides and answers batches until an empty one (the end of input) or a failure.
fn answer_all<C, S, A, W>(
    gate: &Gate<'_, C, S, A>,
    mut next: impl FnMut() -> Option<std::io::Result<Batch>>,
    done: impl Fn(Batch),
    output: &mut W,
) -> Ended
where
    C: Clock,
    S: StateStore,
    A: AuditStore,
    W: Write,
{
    loop {
        let batch = match next() {
            None => return Ended::Closed,
            Some(Err(error)) => return Ended::Input(error),
            Some(Ok(batch)) if batch.requests.is_empty() => return Ended::Closed,
            Some(Ok(batch)) => batch,
        };
        // Every decision's record is in the log before `decide_digested` returns any of them.
        let decisions = gate.decide_digested(&batch.requests, &batch.digests);
        done(batch);
        let mut written = Ok(());
        for decision in &decisions {
            written = written
                .and_then(|()| decision.write_json(output))
                .and_then(|()| output.write_all(b"\n"));
        }
        if let Err(error) = written.and_then(|()| output.flush()) {
            return Ended::Output(error);
        }
        if gate.failed() {
            return Ended::AuditFailed;
        }
    }
}

/// Request lines read together, each with its arguments' digest
/// ([`crate::gate::args_digest`]): hashing them on the reader's thread takes that work off the
/// thread that decides, audits and answers, which a stream of lines keeps busy.
#[derive(Default)]
struct Batch {
    requests: Vec<RequestLine>,
    digests: Vec<tollgate_runtime::audit::Hash>,
}

/// The input's lines, read in batches.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
    reader: protocol::Reader,
}

impl Lines {
    /// The next batch: the next request line and every further one already waiting (empty at
    /// the end of input).
    fn next_batch<R: Read>(&mut self, input: &mut BufReader<R>) -> std::io::Result<Batch> {
        let mut batch = Batch::default();
        let mut bytes = 0usize;
        while let Some(request) = self.next_line(input)? {
            batch.digests.push(crate::gate::args_digest(&request));
            batch.requests.push(request);
            bytes = bytes.saturating_add(self.line.len());
            if batch.requests.len() >= BATCH
                || bytes >= BATCH_BYTES
                || !input.buffer().contains(&b'\n')
            {
                break;
            }
        }
        Ok(batch)
    }

    /// Reads the next non-blank request line; `None` at the end of input. A line over
    /// `MAX_LINE` bytes is read up to one byte past the limit (so it is refused as oversize) and
    /// the rest of it skipped.
    fn next_line<R: Read>(
        &mut self,
        input: &mut BufReader<R>,
    ) -> std::io::Result<Option<RequestLine>> {
        loop {
            self.line.clear();
            if (&mut *input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line)?
                == 0
            {
                return Ok(None);
            }
            if self.line.len() > MAX_LINE && self.line.last() != Some(&b'\n') {
                skip_line(input)?;
            }
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(self.reader.read(&self.line)));
            }
        }
    }
}

/// Skips the rest of a line without holding it.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => {
                input.consume(at + 1);
                return Ok(());
            }
            None => {
                let len = buffer.len();
                input.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(text: &'static [u8], capacity: usize) -> Vec<usize> {
        let mut input = std::io::BufReader::with_capacity(capacity, text);
        let mut lines = Lines::default();
        let mut sizes = Vec::new();
        loop {
            let batch = lines.next_batch(&mut input).unwrap_or_default();
            if batch.requests.is_empty() {
                return sizes;
            }
            assert_eq!(batch.digests.len(), batch.requests.len());
            sizes.push(batch.requests.len());
        }
    }

    #[test]
    fn a_batch_is_the_lines_already_waiting_and_blank_lines_are_skipped() {
        let text = b"{\"tool\":\"a\"}\n\n  \n{\"tool\":\"b\"}\r\n{\"tool\":\"c\"}\n";
        assert_eq!(batches(text, 1 << 16), vec![3]);
        // A small buffer holds about a line at a time: a line not yet in it ends the batch.
        let small = batches(text, 16);
        assert!(small.len() > 1, "{small:?}");
        assert_eq!(small.iter().sum::<usize>(), 3);
    }

    #[test]
    fn an_oversize_line_is_one_refused_request_and_the_next_line_is_read() {
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.extend_from_slice(b"\n{\"tool\":\"t\"}\n");
        let mut input = std::io::BufReader::new(&text[..]);
        let mut lines = Lines::default();
        let first = lines.next_line(&mut input).ok().flatten();
        let second = lines.next_line(&mut input).ok().flatten();
        assert_eq!(
            first
                .and_then(|line| line.refused)
                .map(|(reason, _)| reason),
            Some(tollgate_runtime::Reason::Malformed)
        );
        assert_eq!(second.map(|line| line.tool), Some("t".to_owned()));
    }
}

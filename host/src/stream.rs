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
pub const BATCH: usize = 1024;
/// A batch ends once this many bytes of input are in it (so waiting batches hold little memory).
pub const BATCH_BYTES: usize = 1 << 20;
/// The input buffer: a batch is what it holds, so it holds a full batch of typical lines.
const BUFFER: usize = 1 << 20;

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
    // Decided batches go back to the reader, which made them, to be reused there: memory freed
    // by the thread that did not allocate it costs the allocator more.
    let (decided, returned) = mpsc::channel::<Batch>();
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
                while let Ok(old) = returned.try_recv() {
                    lines.spare = Some(old);
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
    /// A decided batch, back from the gate: the next batch reuses its memory.
    spare: Option<Batch>,
}

impl Lines {
    /// The next batch: the next request line and every further one already waiting (empty at
    /// the end of input).
    fn next_batch<R: Read>(&mut self, input: &mut BufReader<R>) -> std::io::Result<Batch> {
        let mut batch = self.spare.take().unwrap_or_default();
        batch.requests.clear();
        batch.digests.clear();
        let mut bytes = 0usize;
        while let Some((request, len)) = self.next_line(input)? {
            batch.digests.push(crate::gate::args_digest(&request));
            batch.requests.push(request);
            bytes = bytes.saturating_add(len);
            if batch.requests.len() >= BATCH
                || bytes >= BATCH_BYTES
                || memchr::memchr(b'\n', input.buffer()).is_none()
            {
                break;
            }
        }
        Ok(batch)
    }

    /// Reads the next non-blank request line, with the bytes it took; `None` at the end of
    /// input. A line whole in the input's buffer is read where it is; one that runs past the
    /// buffer's end is gathered first ([`Lines::gather_line`]).
    fn next_line<R: Read>(
        &mut self,
        input: &mut BufReader<R>,
    ) -> std::io::Result<Option<(RequestLine, usize)>> {
        loop {
            let buffer = input.fill_buf()?;
            if buffer.is_empty() {
                return Ok(None);
            }
            let Some(end) = memchr::memchr(b'\n', buffer).filter(|&end| end <= MAX_LINE) else {
                return Ok(self.gather_line(input)?.map(|read| (read, self.line.len())));
            };
            let read = buffer.get(..end).and_then(|line| self.read_line(line));
            input.consume(end + 1);
            if let Some(read) = read {
                return Ok(Some((read, end + 1)));
            }
        }
    }

    /// [`Lines::next_line`] for a line not whole in the buffer: read into a line of its own, up
    /// to one byte past `MAX_LINE` (so an oversize line is refused as such) with the rest of it
    /// skipped.
    fn gather_line<R: Read>(
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
            let line = std::mem::take(&mut self.line);
            let read = self.read_line(&line);
            self.line = line;
            if read.is_some() {
                return Ok(read);
            }
        }
    }

    /// The request a line (without its newline) holds; `None` for a blank line.
    fn read_line(&mut self, mut line: &[u8]) -> Option<RequestLine> {
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        (!line.iter().all(u8::is_ascii_whitespace)).then(|| self.reader.read(line))
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
    use tollgate_runtime::Reason;

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
    fn a_batch_ends_once_it_holds_batch_bytes_of_input() {
        // Twenty lines of 100,000 bytes, all in the buffer at once: a batch takes lines until it
        // holds `BATCH_BYTES` (1 MiB), so the first holds 11 and the second the other 9.
        let mut line = b"{\"tool\":\"t\"}".to_vec();
        line.resize(100_000 - 1, b' ');
        line.push(b'\n');
        let text: Vec<u8> = line.repeat(20);
        let text: &'static [u8] = Vec::leak(text);
        assert_eq!(batches(text, 4 << 20), vec![11, 9]);
    }

    /// Every line as read, whatever the buffer: lines found whole in it are read in place,
    /// lines across its end are gathered, and both read alike.
    fn tools(text: &[u8], capacity: usize) -> Vec<(String, Option<Reason>)> {
        let mut input = std::io::BufReader::with_capacity(capacity, text);
        let mut lines = Lines::default();
        let mut read = Vec::new();
        while let Ok(Some((line, _))) = lines.next_line(&mut input) {
            read.push((line.tool, line.refused.map(|(reason, _)| reason)));
        }
        read
    }

    #[test]
    fn lines_read_in_place_and_lines_gathered_read_alike() {
        let mut text = b"{\"tool\":\"a\"}\r\n\n \t\r\n{\"tool\":\"bb\"}\n\r\r\n".to_vec();
        text.extend_from_slice(b"not json\n{\"tool\":\"c\",\"args\":{\"x\":\"\xff\"}}\n");
        text.extend_from_slice(b"{\"tool\":\"last, without a newline\"}");
        let expected = vec![
            ("a".to_owned(), None),
            ("bb".to_owned(), None),
            (String::new(), Some(Reason::Malformed)),
            (String::new(), Some(Reason::Malformed)),
            ("last, without a newline".to_owned(), None),
        ];
        for capacity in (1..=text.len() + 1).chain([1 << 16]) {
            assert_eq!(
                tools(&text, capacity),
                expected,
                "buffer of {capacity} bytes"
            );
        }
    }

    /// What the input's lines hold, read one at a time with [`protocol::read_request`]: split at
    /// each newline, trailing carriage returns dropped, blank lines skipped.
    fn each_line(text: &[u8]) -> Vec<RequestLine> {
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        if text.last() == Some(&b'\n') || text.is_empty() {
            lines.pop();
        }
        lines
            .into_iter()
            .map(|mut line| {
                while let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                line
            })
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(protocol::read_request)
            .collect()
    }

    proptest::proptest! {
        /// Any input, any buffer: the stream reads exactly the requests its lines hold, alike
        /// whether a line was read in place or gathered across the buffer's end.
        #[test]
        fn the_stream_reads_what_each_line_holds(
            fragments in proptest::collection::vec(0usize..10, 0..40),
            capacity in 1usize..200,
        ) {
            const PIECES: [&[u8]; 10] = [
                b"{\"tool\":\"crm.read\",\"args\":{\"id\":\"c-1\"},\"id\":7}",
                b"{\"credential\":\"AAEC\",\"tool\":\"t\"}",
                b"{\"tool\":\"t\",\"time\":5}",
                b"\n",
                b"\r\n",
                b" \t",
                b"not json",
                b"{\"tool\":\"\xff\"}",
                b"\r",
                b"{\"tool\":\"a\",\"args\":{\"xs\":[1,2,{\"k\":true}]}}",
            ];
            let text: Vec<u8> = fragments.iter().flat_map(|&i| PIECES[i].iter().copied()).collect();
            let mut input = std::io::BufReader::with_capacity(capacity, &text[..]);
            let mut lines = Lines::default();
            let mut read = Vec::new();
            while let Ok(Some((line, _))) = lines.next_line(&mut input) {
                read.push(line);
            }
            proptest::prop_assert_eq!(read, each_line(&text));
        }
    }

    #[test]
    fn a_line_of_the_longest_length_is_read_and_one_byte_more_is_refused() {
        for (extra, refused) in [(0, None), (1, Some(Reason::Malformed))] {
            let mut line = b"{\"tool\":\"t\"}".to_vec();
            line.resize(MAX_LINE + extra, b' ');
            line.extend_from_slice(b"\n{\"tool\":\"next\"}\n");
            // In place (the buffer holds the whole line) and gathered.
            for capacity in [MAX_LINE + 64, 1 << 16] {
                let read = tools(&line, capacity);
                let tool = if refused.is_some() { "" } else { "t" };
                assert_eq!(
                    read,
                    vec![(tool.to_owned(), refused), ("next".to_owned(), None)],
                    "{extra} byte(s) over, buffer of {capacity}"
                );
            }
        }
    }

    #[test]
    fn an_oversize_line_is_one_refused_request_and_the_next_line_is_read() {
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.extend_from_slice(b"\n{\"tool\":\"t\"}\n");
        let mut input = std::io::BufReader::new(&text[..]);
        let mut lines = Lines::default();
        let first = lines
            .next_line(&mut input)
            .ok()
            .flatten()
            .map(|(line, _)| line);
        let second = lines
            .next_line(&mut input)
            .ok()
            .flatten()
            .map(|(line, _)| line);
        assert_eq!(
            first
                .and_then(|line| line.refused)
                .map(|(reason, _)| reason),
            Some(tollgate_runtime::Reason::Malformed)
        );
        assert_eq!(second.map(|line| line.tool), Some("t".to_owned()));
    }
}

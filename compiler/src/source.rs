//! A policy set: the text of one or more `.toll` files, each with the [`FileId`] its spans carry.
//! Reading files is the CLI's job; this is only the in-memory set.

use tollgate_grammar::{FileId, Span};

#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as the user gave it (or as found under a directory), for messages.
    pub path: String,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct SourceSet {
    pub files: Vec<SourceFile>,
}

impl SourceSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding one in-memory file, handy for tests.
    pub fn single(path: &str, text: &str) -> Self {
        let mut set = Self::new();
        set.add(path, text);
        set
    }

    pub fn add(&mut self, path: &str, text: &str) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile {
            path: path.to_owned(),
            text: text.to_owned(),
        });
        id
    }

    pub fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn ids(&self) -> impl Iterator<Item = FileId> + '_ {
        (0..self.files.len()).map(|index| FileId(u32::try_from(index).unwrap_or(u32::MAX)))
    }

    /// The source text under a span, or "" if the span does not belong to this set.
    pub fn snippet(&self, span: Span) -> &str {
        self.file(span.file)
            .and_then(|file| file.text.get(span.range()))
            .unwrap_or("")
    }

    /// One-based line and column of a span's start.
    pub fn line_column(&self, span: Span) -> (usize, usize) {
        let Some(file) = self.file(span.file) else {
            return (0, 0);
        };
        let before = file.text.get(..span.start as usize).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

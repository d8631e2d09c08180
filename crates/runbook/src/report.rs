//! Where both passes put what they find: errors, and the warnings `mend
//! lint` shows for what this machine lacks.

use crate::diagnostic::{Diagnostic, Span};

pub(crate) struct Report<'a> {
    pub file: String,
    pub source: &'a str,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(file: String, source: &'a str) -> Report<'a> {
        Report {
            file,
            source,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn at(&self, span: Span, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic::at(&self.file, self.source, span, message, hint)
    }

    pub fn error(
        &mut self,
        span: Span,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = self.at(span, message.into(), hint.into());
        self.errors.push(d);
    }

    /// An error without a position: about the command line, or about
    /// something the whole file lacks.
    pub fn plain(&mut self, message: impl Into<String>, hint: impl Into<Option<String>>) {
        let d = Diagnostic::plain(&self.file, message, hint.into());
        self.errors.push(d);
    }

    /// At `span` when there is one, else plain.
    pub fn error_or_plain(&mut self, span: Option<Span>, message: String, hint: String) {
        match span {
            Some(span) => self.error(span, message, hint),
            None => self.plain(message, hint),
        }
    }

    pub fn warn(&mut self, span: Span, message: String, hint: String) {
        let d = self.at(span, message, Some(hint));
        self.warnings.push(d);
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }
}

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a configuration or rule file, as every config error reports it:
/// `agent.toml:12:5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl FilePosition {
    /// The position of byte `offset` of `text`, read from `path`. Offsets past
    /// the end (or inside a multi-byte character) clamp to a valid position.
    pub fn at(path: &Path, text: &str, offset: usize) -> FilePosition {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        FilePosition {
            path: path.to_owned(),
            line,
            column,
        }
    }
}

impl fmt::Display for FilePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based() {
        let text = "a = 1\nbé = x\n";
        let p = Path::new("f.toml");
        assert_eq!(FilePosition::at(p, text, 0).to_string(), "f.toml:1:1");
        assert_eq!(FilePosition::at(p, text, 6).to_string(), "f.toml:2:1");
        // After the two-byte é, column counts characters.
        assert_eq!(FilePosition::at(p, text, 9).to_string(), "f.toml:2:3");
        assert_eq!(FilePosition::at(p, text, 8).to_string(), "f.toml:2:2");
        assert_eq!(FilePosition::at(p, text, 999).line, 3);
    }
}

//! Where the last `n` lines of a file start, found by reading backwards one block at a time:
//! memory stays one block whatever the file size.
//!
//! Source: kubernetes `pkg/util/tail/tail.go` `FindTailLineStartIndex`. As there, a last line
//! without its `\n` is not counted, and the answer is the same whatever the block size.

use std::io::{self, Read, Seek, SeekFrom};

const BLOCK: usize = 64 * 1024;

/// The offset of the start of the `n`-th line from the end; 0 when `n` is negative (read
/// everything) or the file has no more than `n` lines.
pub fn find_start<R: Read + Seek>(f: &mut R, n: i64) -> io::Result<u64> {
    find_start_with_block(f, n, BLOCK)
}

fn find_start_with_block<R: Read + Seek>(f: &mut R, n: i64, block: usize) -> io::Result<u64> {
    let Ok(n) = u64::try_from(n) else {
        return Ok(0);
    };
    let size = f.seek(SeekFrom::End(0))?;
    let mut buf = vec![0u8; block];
    let (mut left, mut right, mut count) = (size, size, 0u64);
    let mut len = 0;
    while right > 0 && count <= n {
        left = right.saturating_sub(block as u64);
        len = (right - left) as usize;
        f.seek(SeekFrom::Start(left))?;
        f.read_exact(&mut buf[..len])?;
        count += memchr::memchr_iter(b'\n', &buf[..len]).count() as u64;
        right = left;
    }
    // The last block read holds `count - n` newlines too many: skip past them.
    let mut start = left;
    if count > n {
        let skip = (count - n) as usize;
        if let Some(i) = memchr::memchr_iter(b'\n', &buf[..len]).nth(skip - 1) {
            start = left + i as u64 + 1;
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn start(text: &str, n: i64, block: usize) -> usize {
        find_start_with_block(&mut Cursor::new(text.as_bytes()), n, block).expect("in memory") as usize
    }

    #[test]
    fn matches_the_kubelet_for_every_block_size() {
        let text = "a\nbb\n\nccc\ndddd\nlast-incomplete";
        for block in [1, 2, 3, 5, 7, 64, 1024] {
            let tail = |n| &text[start(text, n, block)..];
            assert_eq!(tail(-1), text, "block {block}");
            assert_eq!(tail(0), "last-incomplete", "block {block}");
            assert_eq!(tail(1), "dddd\nlast-incomplete", "block {block}");
            assert_eq!(tail(2), "ccc\ndddd\nlast-incomplete", "block {block}");
            assert_eq!(tail(3), "\nccc\ndddd\nlast-incomplete", "block {block}");
            assert_eq!(tail(5), text, "block {block}");
            assert_eq!(tail(100), text, "block {block}");
        }
        let complete = "x\ny\nz\n";
        for block in [1, 2, 4, 1024] {
            assert_eq!(&complete[start(complete, 0, block)..], "", "block {block}");
            assert_eq!(&complete[start(complete, 1, block)..], "z\n", "block {block}");
            assert_eq!(&complete[start(complete, 2, block)..], "y\nz\n", "block {block}");
            assert_eq!(&complete[start(complete, 3, block)..], complete, "block {block}");
        }
        assert_eq!(start("", 3, 4), 0);
        assert_eq!(start("no newline", 0, 4), 0);
    }
}

//! A column of codes stored as narrow as its codebook allows: a 256-code level takes one byte
//! per node, so the deep levels of a million-item trie stay in cache.

/// Codes below some codebook size, in the narrowest unsigned type that holds them.
#[derive(Debug, Clone)]
pub enum CodeColumn {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

macro_rules! each {
    ($column:expr, $v:ident => $body:expr) => {
        match $column {
            CodeColumn::U8($v) => $body,
            CodeColumn::U16($v) => $body,
            CodeColumn::U32($v) => $body,
            CodeColumn::U64($v) => $body,
        }
    };
}

impl CodeColumn {
    /// Stores `codes`, all below `size`.
    pub fn new(codes: impl Iterator<Item = u64>, size: u64) -> Self {
        if size <= 1 << 8 {
            Self::U8(codes.map(|c| c as u8).collect())
        } else if size <= 1 << 16 {
            Self::U16(codes.map(|c| c as u16).collect())
        } else if size <= 1 << 32 {
            Self::U32(codes.map(|c| c as u32).collect())
        } else {
            Self::U64(codes.collect())
        }
    }

    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    // `each!` expands one arm per width; for the u64 arm the widening cast is the identity.
    #[inline]
    #[allow(clippy::unnecessary_cast)]
    pub fn get(&self, j: usize) -> u64 {
        each!(self, v => v[j] as u64)
    }

    /// Position of `code` within the ascending run `start..end`, if present.
    #[inline]
    #[allow(clippy::unnecessary_cast)]
    pub fn find(&self, start: usize, end: usize, code: u64) -> Option<usize> {
        each!(self, v => v[start..end].binary_search_by(|&c| (c as u64).cmp(&code)).ok().map(|p| start + p))
    }

    /// Calls `f` with every code in `start..end`.
    #[inline]
    #[allow(clippy::unnecessary_cast)]
    pub fn for_each(&self, start: usize, end: usize, mut f: impl FnMut(u64)) {
        each!(self, v => v[start..end].iter().for_each(|&c| f(c as u64)))
    }
}

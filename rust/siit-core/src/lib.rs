//! Pure-Rust core of siit: the prefix trie over item identifiers, collision-free identifier
//! assignment, and duplicate passes over millions of identifiers. Knows nothing of Python,
//! tensors or recommendation: identifiers are rows of integer codes, one codebook per level.

pub mod assign;
mod column;
pub mod duplicates;
mod error;
pub mod layout;
mod sort;
pub mod trie;

#[cfg(test)]
mod tests;

pub use assign::{assign_unique, Assignment, Candidates, Fallback};
pub use duplicates::{disambiguate, group_duplicates, Groups};
pub use error::{Error, Result};
pub use layout::Layout;
pub use trie::{IdentifierTrie, Tables};

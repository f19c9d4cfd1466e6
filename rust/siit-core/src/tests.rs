//! Properties of the core against brute-force references, on small random inputs.

use crate::{
    assign_unique, disambiguate, group_duplicates, Candidates, Error, Fallback, IdentifierTrie,
};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};

type Id = Vec<i64>;

/// Every identifier of the space, in lexicographic order.
fn all_ids(sizes: &[i64]) -> Vec<Id> {
    let mut ids = vec![vec![]];
    for &s in sizes {
        ids = ids
            .into_iter()
            .flat_map(|p| (0..s).map(move |c| [p.clone(), vec![c]].concat()))
            .collect();
    }
    ids
}

fn flat(rows: &[Id]) -> Vec<i64> {
    rows.concat()
}

/// Codebook sizes plus a set of distinct identifiers in that space.
fn id_set() -> impl Strategy<Value = (Vec<i64>, Vec<Id>)> {
    prop::collection::vec(1i64..5, 1..5).prop_flat_map(|sizes| {
        let space = all_ids(&sizes);
        let n = space.len();
        (
            Just(sizes),
            prop::sample::subsequence(space, 1..=n.min(40)).prop_shuffle(),
        )
    })
}

/// Kuhn's algorithm: size of a maximum matching of items to identifiers.
fn max_matching(edges: &[Vec<Id>]) -> usize {
    fn try_item(
        i: usize,
        edges: &[Vec<Id>],
        owner: &mut HashMap<Id, usize>,
        seen: &mut HashSet<Id>,
    ) -> bool {
        for id in &edges[i] {
            if seen.insert(id.clone())
                && owner
                    .get(id)
                    .copied()
                    .is_none_or(|j| try_item(j, edges, owner, seen))
            {
                owner.insert(id.clone(), i);
                return true;
            }
        }
        false
    }
    let mut owner = HashMap::new();
    (0..edges.len())
        .filter(|&i| try_item(i, edges, &mut owner, &mut HashSet::new()))
        .count()
}

fn common_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[derive(Debug, Clone)]
struct Instance {
    sizes: Vec<i64>,
    candidates: Vec<Vec<Id>>,
    scores: Vec<Vec<f64>>,
    reserved: Vec<Id>,
}

/// Tight spaces (items about 0.9x the identifiers) so that collisions are the rule.
fn instance() -> impl Strategy<Value = Instance> {
    (prop::collection::vec(2i64..4, 1..4), 1usize..5).prop_flat_map(|(sizes, k)| {
        let space = all_ids(&sizes);
        let cap = space.len();
        let n_max = ((cap * 9) / 10).max(1);
        (1..=n_max).prop_flat_map(move |n| {
            let id = prop::sample::select(space.clone());
            let score = prop_oneof![4 => (0u8..4).prop_map(|s| -(s as f64) * 0.5), 1 => Just(f64::NEG_INFINITY)];
            let m_max = cap - n;
            (
                Just(sizes.clone()),
                prop::collection::vec(prop::collection::vec(id.clone(), k), n),
                prop::collection::vec(prop::collection::vec(score, k), n),
                prop::sample::subsequence(space.clone(), 0..=m_max.min(3)),
            )
                .prop_map(|(sizes, candidates, scores, reserved)| Instance { sizes, candidates, scores, reserved })
        })
    })
}

fn run(inst: &Instance, fallback: Fallback) -> crate::Result<(Vec<Id>, Vec<i64>)> {
    let (n, k, levels) = (
        inst.candidates.len(),
        inst.candidates[0].len(),
        inst.sizes.len(),
    );
    let codes: Vec<i64> = inst.candidates.iter().flat_map(|c| flat(c)).collect();
    let scores: Vec<f64> = inst.scores.concat();
    let out = assign_unique(
        Candidates {
            codes: &codes,
            scores: &scores,
            n,
            k,
        },
        &inst.sizes,
        &flat(&inst.reserved),
        fallback,
    )?;
    Ok((
        out.codes.chunks(levels).map(|c| c.to_vec()).collect(),
        out.rank,
    ))
}

proptest! {
    #[test]
    fn trie_lookup_inverts_construction((sizes, ids) in id_set()) {
        let trie = IdentifierTrie::new(&flat(&ids), ids.len(), &sizes).unwrap();
        let expected: HashMap<&Id, i64> = ids.iter().enumerate().map(|(i, id)| (id, i as i64)).collect();
        let space = all_ids(&sizes);
        let found = trie.lookup(&flat(&space), space.len()).unwrap();
        for (id, got) in space.iter().zip(found) {
            prop_assert_eq!(got, expected.get(id).copied().unwrap_or(-1));
        }
    }

    #[test]
    fn trie_masks_match_sets((sizes, ids) in id_set()) {
        let trie = IdentifierTrie::new(&flat(&ids), ids.len(), &sizes).unwrap();
        let tables = trie.tables(u64::MAX);
        let csr = trie.tables(0);
        for t in 0..sizes.len() {
            // Every prefix of length t in the space, valid or not.
            let prefixes = all_ids(&sizes[..t]);
            let mask = trie.allowed_mask(&flat(&prefixes), prefixes.len(), t).unwrap();
            let width = sizes[t] as usize;
            for (p, prefix) in prefixes.iter().enumerate() {
                let allowed: BTreeSet<i64> = ids.iter().filter(|id| id[..t] == prefix[..]).map(|id| id[t]).collect();
                let got: BTreeSet<i64> = (0..width).filter(|&c| mask[p * width + c]).map(|c| c as i64).collect();
                prop_assert_eq!(&got, &allowed);
            }
            prop_assert_eq!(tables.max_children[t], (0..tables.num_nodes[t] as usize)
                .map(|u| csr.offsets[t][u + 1] - csr.offsets[t][u]).max().unwrap());
            prop_assert!(tables.dense[t].is_some() && csr.dense[t].is_none());
        }
        // Walking the tables from the root reaches every item's leaf, dense and CSR alike.
        for (item, id) in ids.iter().enumerate() {
            let (mut dense_node, mut csr_node) = (0i64, 0i64);
            for (t, &code) in id.iter().enumerate() {
                dense_node = tables.dense[t].as_ref().unwrap()[dense_node as usize * sizes[t] as usize + code as usize];
                let (start, end) = (csr.offsets[t][csr_node as usize], csr.offsets[t][csr_node as usize + 1]);
                let pos = csr.codes[t][start as usize..end as usize].iter().position(|&c| c == code).unwrap();
                csr_node = start + pos as i64;
                prop_assert_eq!(dense_node, csr_node);
            }
            prop_assert_eq!(csr.leaf_items[csr_node as usize], item as i64);
        }
    }

    #[test]
    fn assignment_is_unique_maximum_and_nearest(inst in instance()) {
        let (codes, rank) = run(&inst, Fallback::Nearest).unwrap();
        let reserved: HashSet<&Id> = inst.reserved.iter().collect();
        let distinct: HashSet<&Id> = codes.iter().collect();
        prop_assert_eq!(distinct.len(), codes.len(), "identifiers are pairwise distinct");
        prop_assert!(codes.iter().all(|c| !reserved.contains(c)), "no reserved identifier is handed out");

        let usable: Vec<Vec<Id>> = inst.candidates.iter().zip(&inst.scores)
            .map(|(c, s)| c.iter().zip(s).filter(|(id, &s)| s > f64::NEG_INFINITY && !reserved.contains(id)).map(|(id, _)| id.clone()).collect())
            .collect();
        for (i, &r) in rank.iter().enumerate() {
            if r >= 0 {
                prop_assert_eq!(&codes[i], &inst.candidates[i][r as usize], "provenance");
                prop_assert!(inst.scores[i][r as usize] > f64::NEG_INFINITY);
            } else {
                prop_assert!(usable[i].iter().all(|id| distinct.contains(id)), "maximal: no free usable candidate left");
            }
        }
        prop_assert_eq!(rank.iter().filter(|&&r| r >= 0).count(), max_matching(&usable), "maximum matching");

        // Fallback items, in item order, take the nearest free identifier (ties: smallest).
        let mut taken: BTreeSet<Id> = inst.reserved.iter().cloned().collect();
        taken.extend(codes.iter().zip(&rank).filter(|(_, &r)| r >= 0).map(|(c, _)| c.clone()));
        for (i, _) in rank.iter().enumerate().filter(|(_, &r)| r < 0) {
            let target = &inst.candidates[i][0];
            let best = all_ids(&inst.sizes).into_iter().filter(|id| !taken.contains(id))
                .max_by(|a, b| common_prefix(a, target).cmp(&common_prefix(b, target)).then(b.cmp(a))).unwrap();
            prop_assert_eq!(&codes[i], &best);
            taken.insert(best);
        }
    }

    #[test]
    fn assignment_is_deterministic_and_errors_only_on_fallback(inst in instance()) {
        let first = run(&inst, Fallback::Nearest).unwrap();
        prop_assert_eq!(&run(&inst, Fallback::Nearest).unwrap(), &first);
        match run(&inst, Fallback::Error) {
            Ok(strict) => prop_assert_eq!(strict, first),
            Err(Error::Unassigned(_)) => prop_assert!(first.1.contains(&-1)),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn duplicates_match_a_hash_map(rows in prop::collection::vec(prop::collection::vec(0i64..3, 2), 1..60)) {
        let codes = flat(&rows);
        let groups = group_duplicates(&codes, rows.len(), 2).unwrap();
        let with_suffix = disambiguate(&codes, rows.len(), 2).unwrap();
        let mut first_seen: HashMap<&Id, i64> = HashMap::new();
        let mut counts: Vec<i64> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let next = first_seen.len() as i64;
            let g = *first_seen.entry(row).or_insert(next);
            if g as usize == counts.len() {
                counts.push(0);
            }
            prop_assert_eq!(with_suffix[i * 3 + 2], counts[g as usize], "occurrence number in row order");
            prop_assert_eq!(&with_suffix[i * 3..i * 3 + 2], &row[..]);
            counts[g as usize] += 1;
            prop_assert_eq!(groups.group[i], g);
        }
        prop_assert_eq!(groups.counts, counts);
    }
}

#[test]
fn greedy_prefers_higher_scores_and_repairs() {
    // Item 1 outbids item 0 for [0]; item 0 falls back to its second choice.
    let inst = Instance {
        sizes: vec![4],
        candidates: vec![vec![vec![0], vec![1]], vec![vec![0], vec![2]]],
        scores: vec![vec![-1.0, -2.0], vec![-0.5, -3.0]],
        reserved: vec![],
    };
    assert_eq!(
        run(&inst, Fallback::Error).unwrap(),
        (vec![vec![1], vec![0]], vec![1, 0])
    );
    // Equal scores: the lower item index wins.
    let tie = Instance {
        scores: vec![vec![-1.0, -2.0], vec![-1.0, -3.0]],
        ..inst
    };
    assert_eq!(
        run(&tie, Fallback::Error).unwrap(),
        (vec![vec![0], vec![2]], vec![0, 1])
    );
    // Item 1 only wants [0], which greedy gives item 0: the repair moves item 0 to [1].
    let repair = Instance {
        sizes: vec![4],
        candidates: vec![vec![vec![0], vec![1]], vec![vec![0], vec![0]]],
        scores: vec![vec![-0.1, -2.0], vec![-0.5, f64::NEG_INFINITY]],
        reserved: vec![],
    };
    assert_eq!(
        run(&repair, Fallback::Error).unwrap(),
        (vec![vec![1], vec![0]], vec![1, 0])
    );
}

#[test]
fn fallback_takes_the_nearest_free_identifier() {
    // Both want [1, 1]; the loser gets the smallest free sibling [1, 0], then [1, 2].
    let inst = Instance {
        sizes: vec![3, 3],
        candidates: vec![vec![vec![1, 1]]; 3],
        scores: vec![vec![-1.0], vec![-0.5], vec![-2.0]],
        reserved: vec![vec![1, 0]],
    };
    let (codes, rank) = run(&inst, Fallback::Nearest).unwrap();
    assert_eq!(rank, vec![-1, 0, -1]);
    assert_eq!(codes, vec![vec![1, 2], vec![1, 1], vec![0, 0]]);
}

#[test]
fn bad_inputs_name_the_argument_and_row() {
    let err = |inst: &Instance| run(inst, Fallback::Nearest).unwrap_err().to_string();
    let base = Instance {
        sizes: vec![4, 4],
        candidates: vec![vec![vec![0, 1]]],
        scores: vec![vec![0.0]],
        reserved: vec![],
    };
    let out_of_range = Instance {
        candidates: vec![vec![vec![0, 1]], vec![vec![0, 7]]],
        scores: vec![vec![0.0]; 2],
        ..base.clone()
    };
    assert!(err(&out_of_range).contains("candidates[1, 0] at level 1"));
    let nan = Instance {
        scores: vec![vec![f64::NAN]],
        ..base.clone()
    };
    assert!(err(&nan).contains("scores[0, 0] is NaN"));
    let dup = Instance {
        reserved: vec![vec![1, 1], vec![2, 2], vec![1, 1]],
        ..base.clone()
    };
    assert!(err(&dup).contains("reserved rows 0 and 2"));
    let full = Instance {
        sizes: vec![1, 1],
        candidates: vec![vec![vec![0, 0]]],
        reserved: vec![vec![0, 0]],
        ..base.clone()
    };
    assert!(matches!(
        run(&full, Fallback::Nearest),
        Err(Error::Capacity(_))
    ));
    let no_items = assign_unique(
        Candidates {
            codes: &[],
            scores: &[],
            n: 0,
            k: 1,
        },
        &[4],
        &[],
        Fallback::Nearest,
    );
    assert!(no_items.unwrap_err().to_string().contains("n = 0"));
    let no_cands = assign_unique(
        Candidates {
            codes: &[],
            scores: &[],
            n: 2,
            k: 0,
        },
        &[4],
        &[],
        Fallback::Nearest,
    );
    assert!(no_cands.unwrap_err().to_string().contains("k = 0"));

    assert!(
        IdentifierTrie::new(&[0, 1, 3, 0, 1], 2, &[4, 4]).is_err(),
        "shape mismatch"
    );
    let dup_ids = IdentifierTrie::new(&[0, 1, 3, 3, 0, 1], 3, &[4, 4])
        .unwrap_err()
        .to_string();
    assert!(dup_ids.contains("items 0 and 2"), "{dup_ids}");
    let trie = IdentifierTrie::new(&[0, 1], 1, &[4, 4]).unwrap();
    assert!(trie
        .allowed_mask(&[0, 1], 1, 2)
        .unwrap_err()
        .to_string()
        .contains("prefixes has 2 columns"));
    assert!(trie
        .lookup(&[0, 4], 1)
        .unwrap_err()
        .to_string()
        .contains("codes: code 4 in row 0 at level 1"));
    assert!(group_duplicates(&[0, -1], 1, 2)
        .unwrap_err()
        .to_string()
        .contains("negative"));
    assert!(disambiguate(&[], 0, 2).is_err());
    assert!(group_duplicates(&[1 << 40, 1 << 40], 1, 2)
        .unwrap_err()
        .to_string()
        .contains("64 bits"));
}

#[test]
fn repair_prefers_the_cheaper_of_two_augmenting_paths() {
    // Greedy: item 1 takes [0], item 2 takes [2]. From item 0, the short path moves item 1 to
    // [1] (losing 1.0); the longer one moves item 1 to [2] and item 2 to [3] (losing nothing).
    let ninf = f64::NEG_INFINITY;
    let inst = Instance {
        sizes: vec![4],
        candidates: vec![
            vec![vec![0], vec![0], vec![0]],
            vec![vec![0], vec![2], vec![1]],
            vec![vec![2], vec![3], vec![3]],
        ],
        scores: vec![
            vec![0.0, ninf, ninf],
            vec![1.0, 1.0, 0.0],
            vec![0.1, 0.1, ninf],
        ],
        reserved: vec![],
    };
    let (codes, rank) = run(&inst, Fallback::Error).unwrap();
    assert_eq!(codes, vec![vec![0], vec![2], vec![3]]);
    assert_eq!(rank, vec![0, 1, 1]);
}

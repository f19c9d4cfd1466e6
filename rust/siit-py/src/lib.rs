//! `siit._core`: thin PyO3 bindings of `siit-core`. Only conversion lives here: numpy arrays
//! in (zero-copy when already int64/float64 and C-contiguous), numpy arrays out, the GIL
//! released around every call into the core, and core errors raised as `SiitError`
//! (a `ValueError`).

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use siit_core as core;

create_exception!(
    siit._core,
    SiitError,
    PyValueError,
    "Invalid input to the siit core (a ValueError): the message names the argument and row."
);

fn to_py(err: core::Error) -> PyErr {
    SiitError::new_err(err.to_string())
}

fn bad(msg: String) -> PyErr {
    SiitError::new_err(msg)
}

/// A numpy array converted to a C-contiguous array of `T` (no copy if it already was one),
/// borrowed read-only, plus its shape.
struct Array<'py, T: numpy::Element> {
    data: PyReadonlyArrayDyn<'py, T>,
    shape: Vec<usize>,
}

impl<T: numpy::Element> Array<'_, T> {
    fn as_slice(&self) -> &[T] {
        self.data.as_slice().expect("made C-contiguous by as_array")
    }
}

fn describe_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

/// Converts `obj` (any array-like) to a C-contiguous numpy array of `dtype`, checking its
/// number of dimensions and that its kind is one of `kinds` ('i', 'u', 'f').
fn as_array<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    ndim: usize,
    expected: &str,
    kinds: &[u8],
) -> PyResult<Array<'py, T>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let untyped: Bound<'py, PyUntypedArray> = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => np
            .call_method1("asarray", (obj,))
            .map_err(|e| bad(format!("{arg} must be a numpy array {expected}: {e}")))?
            .cast_into::<PyUntypedArray>()
            .map_err(|_| bad(format!("{arg} must be a numpy array {expected}")))?,
    };
    let kind = untyped.dtype().kind();
    let dtype_name = untyped.dtype().str()?.to_string();
    if !kinds.contains(&kind) {
        let wanted = if kinds.contains(&b'f') {
            "a real-valued"
        } else {
            "an integer"
        };
        return Err(bad(format!(
            "{arg} must be {wanted} array {expected}, got dtype {dtype_name}"
        )));
    }
    if untyped.ndim() != ndim {
        return Err(bad(format!(
            "{arg} must be a {ndim}-d array {expected}, got shape {}",
            describe_shape(untyped.shape())
        )));
    }
    if kind == b'u'
        && !kinds.contains(&b'f')
        && untyped.dtype().itemsize() == 8
        && untyped.len() > 0
    {
        // uint64 values above 2^63 - 1 would wrap on conversion to int64.
        let max: u64 = untyped.call_method0("max")?.extract()?;
        if max > i64::MAX as u64 {
            return Err(bad(format!(
                "{arg} holds the value {max}, which does not fit in int64"
            )));
        }
    }
    let typed = np
        .call_method1("ascontiguousarray", (untyped, numpy::dtype::<T>(py)))?
        .cast_into::<PyArrayDyn<T>>()
        .map_err(|e| bad(format!("{arg}: {e}")))?;
    let shape = typed.shape().to_vec();
    let data = typed
        .try_readonly()
        .map_err(|e| bad(format!("{arg}: {e}")))?;
    Ok(Array { data, shape })
}

fn int_array<'py>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    ndim: usize,
    expected: &str,
) -> PyResult<Array<'py, i64>> {
    as_array::<i64>(obj, arg, ndim, expected, b"iu")
}

fn read_sizes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    Ok(int_array(obj, "codebook_sizes", 1, "of shape (L,)")?
        .as_slice()
        .to_vec())
}

fn matrix<'py>(
    py: Python<'py>,
    data: Vec<i64>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    data.into_pyarray(py).reshape([rows, cols])
}

/// All valid identifiers of a catalogue, as a prefix trie (see `_core.pyi`).
#[pyclass(module = "siit._core", frozen)]
struct IdentifierTrie {
    inner: core::IdentifierTrie,
}

#[pymethods]
impl IdentifierTrie {
    #[new]
    fn new(
        py: Python<'_>,
        codes: &Bound<'_, PyAny>,
        codebook_sizes: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let sizes = read_sizes(codebook_sizes)?;
        let codes = int_array(codes, "codes", 2, "of shape (n, L)")?;
        if codes.shape[1] != sizes.len() {
            return Err(bad(format!(
                "codes has {} levels (shape {}) but codebook_sizes has {}",
                codes.shape[1],
                describe_shape(&codes.shape),
                sizes.len()
            )));
        }
        let (data, n) = (codes.as_slice(), codes.shape[0]);
        let inner = py
            .detach(|| core::IdentifierTrie::new(data, n, &sizes))
            .map_err(to_py)?;
        Ok(Self { inner })
    }

    #[getter]
    fn n_items(&self) -> usize {
        self.inner.n_items()
    }

    #[getter]
    fn n_levels(&self) -> usize {
        self.inner.layout().levels()
    }

    #[getter]
    fn codebook_sizes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let sizes: Vec<i64> = self
            .inner
            .layout()
            .sizes()
            .iter()
            .map(|&s| s as i64)
            .collect();
        sizes.into_pyarray(py)
    }

    fn __len__(&self) -> usize {
        self.inner.n_items()
    }

    fn __repr__(&self) -> String {
        let layout = self.inner.layout();
        format!(
            "IdentifierTrie(n_items={}, codebook_sizes={:?})",
            self.inner.n_items(),
            layout.sizes()
        )
    }

    fn lookup<'py>(
        &self,
        py: Python<'py>,
        codes: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let levels = self.inner.layout().levels();
        let codes = int_array(codes, "codes", 2, &format!("of shape (b, {levels})"))?;
        if codes.shape[1] != levels {
            return Err(bad(format!(
                "codes must have shape (b, {levels}) to match the trie, got {}",
                describe_shape(&codes.shape)
            )));
        }
        let (data, rows) = (codes.as_slice(), codes.shape[0]);
        let items = py.detach(|| self.inner.lookup(data, rows)).map_err(to_py)?;
        Ok(items.into_pyarray(py))
    }

    fn allowed_mask<'py>(
        &self,
        py: Python<'py>,
        prefixes: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<bool>>> {
        let prefixes = int_array(prefixes, "prefixes", 2, "of shape (b, t)")?;
        let (rows, t) = (prefixes.shape[0], prefixes.shape[1]);
        let data = prefixes.as_slice();
        let mask = py
            .detach(|| self.inner.allowed_mask(data, rows, t))
            .map_err(to_py)?;
        let size = if rows == 0 {
            self.inner.layout().size(t) as usize
        } else {
            mask.len() / rows
        };
        mask.into_pyarray(py).reshape([rows, size])
    }

    #[pyo3(signature = (dense_limit = None), text_signature = "(self, dense_limit=4194304)")]
    fn tables<'py>(
        &self,
        py: Python<'py>,
        dense_limit: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let dense_limit: u64 = match dense_limit.map(|d| d.extract::<i128>()) {
            None => 1 << 22,
            Some(Ok(limit)) if limit >= 0 => limit.min(u64::MAX as i128) as u64,
            Some(Ok(limit)) => return Err(bad(format!("dense_limit must be >= 0, got {limit}"))),
            Some(Err(_)) => {
                return Err(bad("dense_limit must be a non-negative integer".to_string()))
            }
        };
        let tables = py.detach(|| self.inner.tables(dense_limit));
        let out = PyDict::new(py);
        out.set_item("codebook_sizes", tables.codebook_sizes.into_pyarray(py))?;
        out.set_item("num_nodes", tables.num_nodes.into_pyarray(py))?;
        out.set_item("max_children", tables.max_children.into_pyarray(py))?;
        out.set_item("leaf_items", tables.leaf_items.into_pyarray(py))?;
        let sizes = self.inner.layout().sizes().to_vec();
        for (t, ((offsets, codes), dense)) in tables
            .offsets
            .into_iter()
            .zip(tables.codes)
            .zip(tables.dense)
            .enumerate()
        {
            out.set_item(format!("offsets_{t}"), offsets.into_pyarray(py))?;
            out.set_item(format!("codes_{t}"), codes.into_pyarray(py))?;
            if let Some(dense) = dense {
                let rows = dense.len() / sizes[t] as usize;
                out.set_item(
                    format!("dense_{t}"),
                    matrix(py, dense, rows, sizes[t] as usize)?,
                )?;
            }
        }
        Ok(out)
    }
}

#[pyfunction]
#[pyo3(signature = (candidates, scores, codebook_sizes, reserved = None, fallback = "nearest"))]
fn assign_unique<'py>(
    py: Python<'py>,
    candidates: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    codebook_sizes: &Bound<'py, PyAny>,
    reserved: Option<&Bound<'py, PyAny>>,
    fallback: &str,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray1<i64>>)> {
    let fallback = match fallback {
        "nearest" => core::Fallback::Nearest,
        "error" => core::Fallback::Error,
        other => {
            return Err(bad(format!(
                "fallback must be \"nearest\" or \"error\", got {other:?}"
            )))
        }
    };
    let sizes = read_sizes(codebook_sizes)?;
    let levels = sizes.len();
    let cands = int_array(candidates, "candidates", 3, "of shape (n, k, L)")?;
    let (n, k) = (cands.shape[0], cands.shape[1]);
    if cands.shape[2] != levels {
        return Err(bad(format!(
            "candidates has {} levels (shape {}) but codebook_sizes has {levels}",
            cands.shape[2],
            describe_shape(&cands.shape)
        )));
    }
    let scores = as_array::<f64>(scores, "scores", 2, "of shape (n, k)", b"fiu")?;
    if scores.shape != [n, k] {
        return Err(bad(format!(
            "scores must have shape (n, k) = ({n}, {k}) like candidates, got {}",
            describe_shape(&scores.shape)
        )));
    }
    let reserved = match reserved {
        Some(r) if !r.is_none() => {
            let r = int_array(r, "reserved", 2, &format!("of shape (m, {levels})"))?;
            if r.shape[1] != levels {
                return Err(bad(format!(
                    "reserved must have shape (m, {levels}) to match codebook_sizes, got {}",
                    describe_shape(&r.shape)
                )));
            }
            Some(r)
        }
        _ => None,
    };
    let reserved: &[i64] = reserved.as_ref().map_or(&[], |r| r.as_slice());
    let candidates = core::Candidates {
        codes: cands.as_slice(),
        scores: scores.as_slice(),
        n,
        k,
    };
    let result = py
        .detach(|| core::assign_unique(candidates, &sizes, reserved, fallback))
        .map_err(to_py)?;
    Ok((
        matrix(py, result.codes, n, levels)?,
        result.rank.into_pyarray(py),
    ))
}

#[pyfunction]
fn group_duplicates<'py>(
    py: Python<'py>,
    codes: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
    let codes = int_array(codes, "codes", 2, "of shape (n, L)")?;
    let (data, n, levels) = (codes.as_slice(), codes.shape[0], codes.shape[1]);
    let groups = py
        .detach(|| core::group_duplicates(data, n, levels))
        .map_err(to_py)?;
    Ok((
        groups.group.into_pyarray(py),
        groups.counts.into_pyarray(py),
    ))
}

#[pyfunction]
fn disambiguate<'py>(
    py: Python<'py>,
    codes: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let codes = int_array(codes, "codes", 2, "of shape (n, L)")?;
    let (data, n, levels) = (codes.as_slice(), codes.shape[0], codes.shape[1]);
    let out = py
        .detach(|| core::disambiguate(data, n, levels))
        .map_err(to_py)?;
    matrix(py, out, n, levels + 1)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SiitError", m.py().get_type::<SiitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<IdentifierTrie>()?;
    m.add_function(wrap_pyfunction!(assign_unique, m)?)?;
    m.add_function(wrap_pyfunction!(group_duplicates, m)?)?;
    m.add_function(wrap_pyfunction!(disambiguate, m)?)?;
    Ok(())
}

// ul4m4._core: the one bindings file. It only converts arrays, checks their layout,
// releases the GIL, calls the C++ core and maps its exceptions. Validation of the
// user's input (shapes, masks, parameters) is done in python/ul4m4/.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <utility>

#include "ul4m4/engine.hpp"
#include "ul4m4/kernels.hpp"
#include "ul4m4/parallel.hpp"
#include "output_pool.hpp"
#include "released.hpp"
#include "shared.hpp"

namespace py = pybind11;
using namespace ul4m4;

namespace {

// Compared by value (kind, size, byte order), not by identity: an array that went through
// pickle or another process carries an equal but distinct dtype object.
DType dtype_of(const py::array& a, const char* what) {
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'f' && dt.attr("isnative").cast<bool>()) {
    if (dt.itemsize() == 4) return DType::F32;
    if (dt.itemsize() == 8) return DType::F64;
  }
  throw py::type_error(std::string(what) + ": expected float32 or float64 in native byte order, got " +
                       std::string(py::str(dt)));
}

template <class View, class Arr>
View view_of(Arr& a, const char* what) {
  if (a.ndim() != 2) throw py::value_error(std::string(what) + ": expected a 2-D array");
  View v;
  v.dtype = dtype_of(a, what);
  const py::ssize_t es = a.itemsize();
  v.rows = a.shape(0);
  v.cols = a.shape(1);
  if (v.cols > 1 && a.strides(1) != es)
    throw py::value_error(std::string(what) + ": rows must be contiguous (pass np.ascontiguousarray)");
  if (a.strides(0) % es != 0 || a.strides(0) < 0)
    throw py::value_error(std::string(what) + ": unsupported row stride");
  v.row_stride = v.rows > 1 ? a.strides(0) / es : v.cols;
  if constexpr (std::is_same_v<View, MatrixView>)
    v.data = a.data();
  else
    v.data = a.mutable_data();
  return v;
}

struct Inputs {
  std::vector<py::array> keep;
  Dataset ds;
};

Inputs make_dataset(const std::vector<py::array>& Xs, const py::array_t<uint8_t, py::array::c_style>& present) {
  Inputs in;
  in.keep = Xs;
  if (present.ndim() != 2 || present.shape(1) != static_cast<py::ssize_t>(Xs.size()))
    throw py::value_error("presence mask must be N x M");
  in.ds.n = present.shape(0);
  in.ds.present = present.data();
  for (size_t m = 0; m < Xs.size(); ++m) {
    MatrixView v = view_of<MatrixView>(in.keep[m], "modality array");
    if (v.rows != in.ds.n) throw py::value_error("modality arrays and mask differ in row count");
    in.ds.X.push_back(v);
  }
  return in;
}

RunContext make_ctx(int n_threads, int64_t chunk) {
  RunContext ctx;
  ctx.n_threads = std::max(1, n_threads);
  ctx.chunk_rows = std::max<int64_t>(1, chunk);
  ctx.interrupted = ul4m4_bindings::python_interrupt_poll();
  return ctx;
}

// f without the GIL; Ctrl-C in the engine re-raises KeyboardInterrupt (released.hpp).
template <class F>
auto run_released(F&& f) -> decltype(f()) {
  return ul4m4_bindings::run_released_as<Interrupted>(std::forward<F>(f));
}

std::vector<py::array_t<double>> to_arrays(const std::vector<std::vector<double>>& v,
                                           const std::vector<int64_t>& rows) {
  std::vector<py::array_t<double>> out;
  for (size_t m = 0; m < v.size(); ++m) {
    const int64_t r = rows[m];
    const int64_t c = r ? static_cast<int64_t>(v[m].size()) / r : 0;
    py::array_t<double> a({r, c});
    std::copy(v[m].begin(), v[m].end(), a.mutable_data());
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<double> flat(const py::array_t<double, py::array::c_style | py::array::forcecast>& a) {
  return std::vector<double>(a.data(), a.data() + a.size());
}

Normalizer make_norm(const std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>>& mu,
                     const std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>>& sigma) {
  if (mu.size() != sigma.size()) throw py::value_error("mean and scale differ in length");
  Normalizer n;
  for (size_t m = 0; m < mu.size(); ++m) {
    if (mu[m].size() != sigma[m].size()) throw py::value_error("mean and scale differ in width");
    n.d.push_back(mu[m].size());
    n.mu.push_back(flat(mu[m]));
    n.sigma.push_back(flat(sigma[m]));
  }
  n.validate();
  n.finalize();
  return n;
}

Centres make_centres(const std::vector<py::array_t<double, py::array::c_style | py::array::forcecast>>& C,
                     const py::array_t<uint8_t, py::array::c_style | py::array::forcecast>& H,
                     const Normalizer& norm) {
  if (H.ndim() != 2 || H.shape(1) != static_cast<py::ssize_t>(C.size()) ||
      static_cast<int>(C.size()) != norm.M())
    throw py::value_error("centre mask must be K x M");
  Centres c;
  c.K = H.shape(0);
  c.H.assign(H.data(), H.data() + H.size());
  for (size_t m = 0; m < C.size(); ++m) {
    if (C[m].ndim() != 2 || C[m].shape(0) != c.K || C[m].shape(1) != norm.d[m])
      throw py::value_error("centre array " + std::to_string(m) + " must be K x d_m");
    std::vector<double> z = flat(C[m]);
    for (int64_t j = 0; j < c.K; ++j)
      if (!c.H[j * C.size() + m])
        std::fill(z.begin() + j * norm.d[m], z.begin() + (j + 1) * norm.d[m], 0.0);
    c.z.push_back(std::move(z));
  }
  return c;
}

py::dict centres_dict(const Centres& c, const std::vector<int64_t>& d) {
  py::dict out;
  const int M = static_cast<int>(d.size());
  std::vector<int64_t> rows(M, c.K);
  auto zs = to_arrays(c.z, rows);
  py::list lst;
  for (int m = 0; m < M; ++m) {
    double* p = zs[m].mutable_data();
    for (int64_t j = 0; j < c.K; ++j)
      if (!c.has(j, m)) std::fill(p + j * d[m], p + (j + 1) * d[m], std::numeric_limits<double>::quiet_NaN());
    lst.append(zs[m]);
  }
  py::array_t<bool> H({c.K, static_cast<int64_t>(M)});
  for (int64_t i = 0; i < c.K * M; ++i) H.mutable_data()[i] = c.H[i] != 0;
  out["centres"] = lst;
  out["H"] = H;
  return out;
}

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

}  // namespace

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "ul4m4 compiled core (private; use the ul4m4 package)";
  mod.attr("__version__") = UL4M4_VERSION;
  // Numbers of the method (ul4m4/common.hpp), for the Python passes that apply them too.
  mod.attr("SIGMA_FLOOR") = kSigmaFloor;
  mod.attr("RESTART_SEED_STRIDE") = kRestartSeedStride;

  mod.def("simd_level", [] { return std::string(kernels().name); });
  mod.def("max_simd_level", [] { return std::string(simd_level_name(max_simd_level())); });
  mod.def("set_simd_level", [](const std::string& name) { set_simd_level(parse_simd_level(name)); }, py::arg("name"));
  mod.def("available_simd_levels", [] {
    std::vector<std::string> names;
    for (SimdLevel l : available_simd_levels()) names.emplace_back(simd_level_name(l));
    return names;
  });
  mod.def("openmp_max_threads", [] { return default_threads(); });  // either backend (parallel.hpp)
  mod.def("threading_backend", [] { return std::string(threading_backend()); });
  mod.def("max_threads", &ul4m4::max_threads, "The most threads a pass uses (larger requests are clamped).");

  mod.def("output_block", [](int64_t nbytes, int64_t call_bytes) {
    if (nbytes < 0 || call_bytes < nbytes) throw py::value_error("output_block: bad sizes");
    auto& pool = ul4m4_bindings::OutputPool::instance();
    const size_t n = static_cast<size_t>(nbytes);
    auto* blk = new std::pair<void*, size_t>(pool.take(n, static_cast<size_t>(call_bytes)), n);
    void* p = blk->first;
    // The block goes back to the pool when the last array viewing it dies.
    py::capsule owner(blk, [](void* q) {
      auto* b = static_cast<std::pair<void*, size_t>*>(q);
      ul4m4_bindings::OutputPool::instance().give(b->first, b->second);
      delete b;
    });
    return py::array_t<uint8_t>({static_cast<py::ssize_t>(n)}, {static_cast<py::ssize_t>(1)},
                                static_cast<uint8_t*>(p), owner);
  }, py::arg("nbytes"), py::arg("call_bytes"),
     "A writable uint8 array of nbytes from the output pool (output_pool.hpp); call_bytes: all "
     "the outputs of this call, the most the pool keeps once they are freed.");
  mod.def("output_pool_info", [] {
    auto& pool = ul4m4_bindings::OutputPool::instance();
    return py::dict(py::arg("kept_bytes") = pool.kept_bytes(), py::arg("reused_blocks") = pool.reused_blocks());
  });
  mod.def("release_output_pool", [] { ul4m4_bindings::OutputPool::instance().release(); },
          "Unmaps the output blocks the pool keeps for reuse.");

  mod.def("compute_stats", [](std::vector<py::array> Xs, U8 present, int n_threads, int64_t chunk) {
    Inputs in = make_dataset(Xs, present);
    RunContext ctx = make_ctx(n_threads, chunk);
    Normalizer n = run_released([&] { return compute_stats(in.ds, ctx); });
    std::vector<py::array_t<double>> mu, sigma;
    for (int m = 0; m < n.M(); ++m) {
      py::array_t<double> a(n.d[m]), b(n.d[m]);
      std::copy(n.mu[m].begin(), n.mu[m].end(), a.mutable_data());
      std::copy(n.sigma[m].begin(), n.sigma[m].end(), b.mutable_data());
      mu.push_back(a);
      sigma.push_back(b);
    }
    return py::make_tuple(mu, sigma);
  }, py::arg("Xs"), py::arg("present"), py::arg("n_threads"), py::arg("chunk"));

  mod.def("presence_from_nan", [](std::vector<py::array> Xs, int64_t n, int n_threads, int64_t chunk) {
    std::vector<MatrixView> views;
    for (auto& a : Xs) views.push_back(view_of<MatrixView>(a, "modality array"));
    py::array_t<uint8_t> P({n, static_cast<int64_t>(Xs.size())});
    uint8_t* p = P.mutable_data();
    RunContext ctx = make_ctx(n_threads, chunk);
    run_released([&] { presence_from_nan(views, n, p, ctx); return 0; });
    return P;
  }, py::arg("Xs"), py::arg("n"), py::arg("n_threads"), py::arg("chunk"));

  mod.def("check_finite", [](std::vector<py::array> Xs, U8 present, int n_threads, int64_t chunk) {
    Inputs in = make_dataset(Xs, present);
    RunContext ctx = make_ctx(n_threads, chunk);
    run_released([&] { check_finite(in.ds, ctx); return 0; });
  }, py::arg("Xs"), py::arg("present"), py::arg("n_threads"), py::arg("chunk"));

  py::class_<Model>(mod, "Model")
      .def(py::init([](std::vector<F64> mu, std::vector<F64> sigma, std::vector<F64> C, U8 H) {
             Normalizer n = make_norm(mu, sigma);
             Centres c = make_centres(C, H, n);
             return std::make_unique<Model>(std::move(n), std::move(c));
           }),
           py::arg("mean"), py::arg("scale"), py::arg("centres"), py::arg("center_mask"))
      .def_property_readonly("n_clusters", &Model::K)
      .def_property_readonly("n_modalities", &Model::M)
      .def_property_readonly("f_table_built", [](const Model& m) { return m.f_built(); },
                             "Whether the K x K x M greedy table exists yet (built on first use).")
      .def("f_table", [](const Model& m) {
        py::array_t<double> f({m.K(), m.K(), static_cast<int64_t>(m.M())});
        std::copy(m.f().begin(), m.f().end(), f.mutable_data());
        return f;
      });

  mod.def("kmeans", [](std::vector<py::array> Xs, U8 present, std::vector<F64> mu, std::vector<F64> sigma,
                       int64_t n_clusters, int max_iter, double tol, int n_init, uint64_t seed,
                       std::optional<std::vector<F64>> init_C, std::optional<U8> init_H,
                       std::optional<py::function> callback, int n_threads, int64_t chunk,
                       const std::string& algorithm) {
    Inputs in = make_dataset(Xs, present);
    Normalizer norm = make_norm(mu, sigma);
    if (norm.M() != in.ds.M()) throw py::value_error("statistics do not match the modalities");
    if (algorithm != "lloyd" && algorithm != "bounded")
      throw py::value_error("algorithm must be 'lloyd' or 'bounded', got '" + algorithm + "'");
    std::optional<Centres> init;
    if (init_C) init = make_centres(*init_C, *init_H, norm);
    KMeansParams p = ul4m4_bindings::kmeans_params(n_clusters, max_iter, tol, n_init, seed);
    p.algorithm = algorithm == "bounded" ? KMeansParams::Algorithm::Bounded : KMeansParams::Algorithm::Lloyd;
    RunContext ctx = make_ctx(n_threads, chunk);
    ul4m4_bindings::IterationCallback cb(std::move(callback));
    ctx.on_iteration = cb.hook();
    KMeansResult r = run_released([&] { return kmeans(in.ds, norm, p, init ? &*init : nullptr, ctx); });
    cb.rethrow();
    py::dict out = centres_dict(r.centres, norm.d);
    py::array_t<int32_t> labels(static_cast<py::ssize_t>(r.labels.size()));
    std::copy(r.labels.begin(), r.labels.end(), labels.mutable_data());
    out["labels"] = labels;
    out["inertia"] = r.inertia;
    out["n_iter"] = r.n_iter;
    out["n_unassigned"] = r.n_unassigned;
    out["converged"] = r.converged;
    out["history"] = ul4m4_bindings::history_list(r.history);
    return out;
  }, py::arg("Xs"), py::arg("present"), py::arg("mu"), py::arg("sigma"), py::arg("n_clusters"),
     py::arg("max_iter"), py::arg("tol"), py::arg("n_init"), py::arg("seed"), py::arg("init_C"),
     py::arg("init_H"), py::arg("callback"), py::arg("n_threads"), py::arg("chunk"), py::arg("algorithm") = "lloyd");

  mod.def("seed_kmeanspp", [](std::vector<py::array> Xs, U8 present, std::vector<F64> mu,
                              std::vector<F64> sigma, int64_t K, uint64_t seed, int n_threads, int64_t chunk) {
    Inputs in = make_dataset(Xs, present);
    Normalizer norm = make_norm(mu, sigma);
    RunContext ctx = make_ctx(n_threads, chunk);
    Centres c = run_released([&] { return seed_kmeanspp(in.ds, norm, K, seed, ctx); });
    return centres_dict(c, norm.d);
  }, py::arg("Xs"), py::arg("present"), py::arg("mu"), py::arg("sigma"), py::arg("K"), py::arg("seed"),
     py::arg("n_threads"), py::arg("chunk"));

  mod.def("assign", [](const Model& model, std::vector<py::array> Xs, U8 present, int n_threads, int64_t chunk) {
    Inputs in = make_dataset(Xs, present);
    if (in.ds.M() != model.M()) throw py::value_error("number of modalities differs from the model's");
    py::array_t<int32_t> labels(in.ds.n);
    py::array_t<double> d2(in.ds.n);
    int32_t* lp = labels.mutable_data();
    double* dp = d2.mutable_data();
    RunContext ctx = make_ctx(n_threads, chunk);
    run_released([&] { assign(in.ds, model, lp, dp, ctx); return 0; });
    return py::make_tuple(labels, d2);
  }, py::arg("model"), py::arg("Xs"), py::arg("present"), py::arg("n_threads"), py::arg("chunk"));

  mod.def("assign_and_sum", [](const Model& model, std::vector<py::array> Xs, U8 present,
                               std::optional<py::array_t<int32_t, py::array::c_style | py::array::forcecast>> prev,
                               int n_threads, int64_t chunk) {
    Inputs in = make_dataset(Xs, present);
    if (in.ds.M() != model.M()) throw py::value_error("number of modalities differs from the model's");
    if (prev && prev->size() != in.ds.n) throw py::value_error("prev_labels has the wrong length");
    py::array_t<int32_t> labels(in.ds.n);
    py::array_t<double> d2(in.ds.n);
    int32_t* lp = labels.mutable_data();
    double* dp = d2.mutable_data();
    const int32_t* pp = prev ? prev->data() : nullptr;
    RunContext ctx = make_ctx(n_threads, chunk);
    UpdateSums u = run_released([&] { return assign_and_sum(in.ds, model, lp, dp, pp, ctx); });
    const int64_t M = model.M();
    py::array_t<double> sums({u.K, u.D});
    std::copy(u.sums.begin(), u.sums.end(), sums.mutable_data());
    py::array_t<int64_t> counts({u.K, M}), sizes(u.K);
    std::copy(u.counts.begin(), u.counts.end(), counts.mutable_data());
    std::copy(u.sizes.begin(), u.sizes.end(), sizes.mutable_data());
    py::dict out;
    out["labels"] = labels;
    out["min_d2"] = d2;
    out["sums"] = sums;
    out["counts"] = counts;
    out["sizes"] = sizes;
    out["inertia"] = u.inertia;
    out["n_unassigned"] = u.n_unassigned;
    out["n_changed"] = u.n_changed;
    return out;
  }, py::arg("model"), py::arg("Xs"), py::arg("present"), py::arg("prev"), py::arg("n_threads"),
     py::arg("chunk"),
     "Assignment plus the float64 sums of the next centre update (for streaming / distributed fits).");

  mod.def("update_centres", [](std::vector<F64> mu, std::vector<F64> sigma, std::vector<F64> C, U8 H,
                               F64 sums, py::array_t<int64_t, py::array::c_style | py::array::forcecast> counts,
                               py::array_t<int64_t, py::array::c_style | py::array::forcecast> sizes) {
    Normalizer norm = make_norm(mu, sigma);
    Centres old = make_centres(C, H, norm);
    UpdateSums u;
    u.K = old.K;
    u.D = sums.ndim() == 2 ? sums.shape(1) : -1;
    if (sums.ndim() != 2 || sums.shape(0) != u.K || counts.size() != u.K * norm.M() || sizes.size() != u.K)
      throw py::value_error("sums must be K x D, counts K x M, sizes K");
    u.sums.assign(sums.data(), sums.data() + sums.size());
    u.counts.assign(counts.data(), counts.data() + counts.size());
    u.sizes.assign(sizes.data(), sizes.data() + sizes.size());
    return centres_dict(centres_from_sums(u, old, norm), norm.d);
  }, py::arg("mu"), py::arg("sigma"), py::arg("C"), py::arg("H"), py::arg("sums"), py::arg("counts"),
     py::arg("sizes"), "Centres of a Lloyd update from summed assign_and_sum results (section 4 rules).");

  mod.def("complete", [](const Model& model, std::vector<py::array> Xs, U8 present, std::vector<py::array> outs,
                         const std::string& mode, double temperature_scale, double temperature,
                         int n_threads, int64_t chunk, bool return_confidence) {
    Inputs in = make_dataset(Xs, present);
    const int M = in.ds.M();
    if (M != model.M()) throw py::value_error("number of modalities differs from the model's");
    if (static_cast<int>(outs.size()) != M) throw py::value_error("one output array per modality is needed");
    std::vector<MutableMatrixView> ov;
    for (int m = 0; m < M; ++m) {
      if (!outs[m].writeable()) throw py::value_error("output arrays must be writeable");
      MutableMatrixView v = view_of<MutableMatrixView>(outs[m], "output array");
      if (v.rows != in.ds.n || v.cols != in.ds.X[m].cols) throw py::value_error("output array has the wrong shape");
      ov.push_back(v);
    }
    const CompletionParams p = ul4m4_bindings::completion_params(mode, temperature_scale, temperature);
    py::array_t<bool> imputed({in.ds.n, static_cast<int64_t>(M)}), unfilled({in.ds.n, static_cast<int64_t>(M)});
    auto* ip = reinterpret_cast<uint8_t*>(imputed.mutable_data());
    auto* up = reinterpret_cast<uint8_t*>(unfilled.mutable_data());
    RunContext ctx = make_ctx(n_threads, chunk);
    if (!return_confidence) {
      run_released([&] { complete(in.ds, model, p, ov, ip, up, ctx); return 0; });
      return py::tuple(py::make_tuple(imputed, unfilled));
    }
    py::array_t<float> conf({in.ds.n, static_cast<int64_t>(M)});
    float* cp = conf.mutable_data();
    run_released([&] { complete(in.ds, model, p, ov, ip, up, ctx, cp); return 0; });
    return py::tuple(py::make_tuple(imputed, unfilled, conf));
  }, py::arg("model"), py::arg("Xs"), py::arg("present"), py::arg("outs"), py::arg("mode"),
     py::arg("temperature_scale"), py::arg("temperature"), py::arg("n_threads"), py::arg("chunk"),
     py::arg("return_confidence") = false,
     "Completion into outs; returns (imputed, unfilled) masks, plus an N x M float32 confidence "
     "when return_confidence (see engine.hpp).");
}

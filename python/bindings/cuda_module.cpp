// ul4m4._cuda: bindings of the CUDA engine (cuda/include/ul4m4/cuda_engine.hpp). Like
// core_module.cpp it only converts arguments, releases the GIL, calls the engine and maps
// its exceptions. It does not link against torch: Python passes device pointers
// (tensor.data_ptr()), shapes, strides, dtypes, the device ordinal, the CUDA stream handle
// (torch.cuda.current_stream(device).cuda_stream) and a workspace (pointer, bytes) as
// integers. Validation of the user's input is done in python/ul4m4/_gpu.py.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <optional>

#include "ul4m4/cuda_engine.hpp"
#include "released.hpp"
#include "shared.hpp"

namespace py = pybind11;
using namespace ul4m4::cuda;

namespace {

// (ptr, rows, cols, row_stride, dtype) with dtype "float32" | "float64".
using ArrayArg = std::tuple<uintptr_t, int64_t, int64_t, int64_t, std::string>;
// (device, stream, workspace ptr, workspace bytes)
using LaunchArg = std::tuple<int, uintptr_t, uintptr_t, size_t>;

DType dtype_of(const std::string& s) {
  if (s == "float32") return DType::F32;
  if (s == "float64") return DType::F64;
  throw py::type_error("expected float32 or float64, got " + s);
}

DeviceData make_data(const std::vector<ArrayArg>& Xs, uintptr_t present, int64_t n) {
  DeviceData d;
  d.n = n;
  d.present = reinterpret_cast<const uint8_t*>(present);
  for (const auto& [ptr, rows, cols, stride, dt] : Xs) {
    DeviceMatrix m;
    m.data = reinterpret_cast<const void*>(ptr);
    m.rows = rows;
    m.cols = cols;
    m.row_stride = stride;
    m.dtype = dtype_of(dt);
    if (rows != n) throw py::value_error("modality arrays and mask differ in row count");
    if (cols < 1) throw py::value_error("a modality has width 0");
    if (rows > 1 && stride < cols) throw py::value_error("unsupported row stride");
    d.X.push_back(m);
  }
  if (d.X.empty()) throw py::value_error("no modality given");
  return d;
}

Launch make_launch(const LaunchArg& l) {
  Launch L;
  L.device = std::get<0>(l);
  L.stream = reinterpret_cast<cudaStream_t>(std::get<1>(l));
  L.ws.data = reinterpret_cast<void*>(std::get<2>(l));
  L.ws.bytes = std::get<3>(l);
  L.interrupted = ul4m4_bindings::python_interrupt_poll();
  return L;
}

// f without the GIL; Ctrl-C in the engine re-raises KeyboardInterrupt (released.hpp).
template <class F>
auto run_released(F&& f) -> decltype(f()) {
  return ul4m4_bindings::run_released_as<Interrupted>(std::forward<F>(f));
}

std::vector<int64_t> dims_of(const std::vector<ArrayArg>& Xs) {
  std::vector<int64_t> d;
  for (const auto& x : Xs) d.push_back(std::get<2>(x));
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, mod) {
  mod.doc() = "ul4m4 CUDA engine (private; use the ul4m4 package with device='cuda')";
  mod.attr("__version__") = UL4M4_VERSION;
  mod.attr("runtime_version") = CUDART_VERSION;
  mod.attr("default_chunk_budget") = kDefaultChunkBudget;

  mod.def("probe", [] {
    std::string reason;
    const int n = device_count(&reason);
    return py::make_tuple(n, reason);
  }, "(number of visible CUDA devices, '' or the CUDA error string when there is none)");
  mod.def("device_count", [] {
    std::string reason;
    return device_count(&reason);
  });
  mod.def("device_name", [](int device) { return device_name(device); }, py::arg("device"));

  // ---------------------------------------------------------------- workspace sizes
  mod.def("scan_workspace", [](int64_t n, int M) { return scan_workspace(n, M); }, py::arg("n"), py::arg("M"));
  mod.def("stats_workspace", [](int64_t n, std::vector<int64_t> dims) { return stats_workspace(n, dims); },
          py::arg("n"), py::arg("dims"));
  mod.def("model_bytes", [](int64_t K, std::vector<int64_t> dims, bool completion) {
    return model_bytes(K, dims, completion);
  }, py::arg("K"), py::arg("dims"), py::arg("completion"));
  mod.def("assign_workspace", [](int64_t n, int64_t K, std::vector<int64_t> dims, size_t budget) {
    return assign_workspace(n, K, dims, budget);
  }, py::arg("n"), py::arg("K"), py::arg("dims"), py::arg("budget"));
  mod.def("kmeans_workspace", [](int64_t n, int64_t K, std::vector<int64_t> dims, size_t budget) {
    return kmeans_workspace(n, K, dims, budget);
  }, py::arg("n"), py::arg("K"), py::arg("dims"), py::arg("budget"));
  mod.def("seed_workspace", [](int64_t n, int64_t K, std::vector<int64_t> dims) { return seed_workspace(n, K, dims); },
          py::arg("n"), py::arg("K"), py::arg("dims"));
  mod.def("complete_workspace", [](int64_t n, int64_t K, std::vector<int64_t> dims, bool soft, size_t budget) {
    return complete_workspace(n, K, dims, soft, budget);
  }, py::arg("n"), py::arg("K"), py::arg("dims"), py::arg("soft"), py::arg("budget"));

  // ---------------------------------------------------------------- passes
  mod.def("scan", [](std::vector<ArrayArg> Xs, uintptr_t present, int64_t n, uintptr_t present_out, LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    ScanResult r = run_released([&] { return scan(d, reinterpret_cast<uint8_t*>(present_out), L); });
    py::dict out;
    out["partly_row"] = r.partly_row;
    out["partly_m"] = r.partly_m;
    out["partly_nan"] = r.partly_nan;
    out["bad_row"] = r.bad_row;
    out["bad_m"] = r.bad_m;
    out["n_empty"] = r.n_empty;
    out["first_empty"] = r.first_empty;
    return out;
  }, py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("present_out"), py::arg("launch"),
     "Presence from NaN (when present == 0, into present_out), finiteness and empty rows.");

  mod.def("compute_stats", [](std::vector<ArrayArg> Xs, uintptr_t present, int64_t n, uintptr_t mu, uintptr_t sigma,
                              LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    run_released([&] {
      compute_stats(d, reinterpret_cast<double*>(mu), reinterpret_cast<double*>(sigma), L);
      return 0;
    });
  }, py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("mu"), py::arg("sigma"), py::arg("launch"));

  mod.def("build_model", [](uintptr_t model, int64_t K, std::vector<int64_t> dims, uintptr_t mu, uintptr_t sigma,
                            uintptr_t C, uintptr_t H, bool completion, LaunchArg l) {
    Launch L = make_launch(l);
    run_released([&] {
      build_model(reinterpret_cast<void*>(model), K, dims, reinterpret_cast<const double*>(mu),
                  reinterpret_cast<const double*>(sigma), reinterpret_cast<const double*>(C),
                  reinterpret_cast<const uint8_t*>(H), completion, L);
      return 0;
    });
  }, py::arg("model"), py::arg("K"), py::arg("dims"), py::arg("mu"), py::arg("sigma"), py::arg("C"),
     py::arg("H"), py::arg("completion"), py::arg("launch"));

  mod.def("assign", [](uintptr_t model, int64_t K, std::vector<ArrayArg> Xs, uintptr_t present, int64_t n,
                       uintptr_t labels, uintptr_t min_d2, size_t budget, LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    const std::vector<int64_t> dims = dims_of(Xs);
    run_released([&] {
      assign(reinterpret_cast<const void*>(model), K, dims, d, reinterpret_cast<int32_t*>(labels),
             reinterpret_cast<double*>(min_d2), budget, L);
      return 0;
    });
  }, py::arg("model"), py::arg("K"), py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("labels"),
     py::arg("min_d2"), py::arg("budget"), py::arg("launch"));

  mod.def("kmeans", [](std::vector<ArrayArg> Xs, uintptr_t present, int64_t n, uintptr_t mu, uintptr_t sigma,
                       int64_t n_clusters, int max_iter, double tol, int n_init, uint64_t seed, uintptr_t init_C,
                       uintptr_t init_H, uintptr_t C_out, uintptr_t H_out, uintptr_t labels_out,
                       std::optional<py::function> callback, size_t budget, LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    const KMeansParams p = ul4m4_bindings::kmeans_params(n_clusters, max_iter, tol, n_init, seed);
    ul4m4_bindings::IterationCallback cb(std::move(callback));
    const std::function<bool(const IterationStats&)> on_iter = cb.hook();
    KMeansResult r = run_released([&] {
      return kmeans(d, reinterpret_cast<const double*>(mu), reinterpret_cast<const double*>(sigma), p,
                    reinterpret_cast<const double*>(init_C), reinterpret_cast<const uint8_t*>(init_H),
                    reinterpret_cast<double*>(C_out), reinterpret_cast<uint8_t*>(H_out),
                    reinterpret_cast<int32_t*>(labels_out), on_iter, budget, L);
    });
    cb.rethrow();
    py::dict out;
    out["inertia"] = r.inertia;
    out["n_iter"] = r.n_iter;
    out["n_unassigned"] = r.n_unassigned;
    out["converged"] = r.converged;
    out["history"] = ul4m4_bindings::history_list(r.history);
    return out;
  }, py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("mu"), py::arg("sigma"), py::arg("n_clusters"),
     py::arg("max_iter"), py::arg("tol"), py::arg("n_init"), py::arg("seed"), py::arg("init_C"),
     py::arg("init_H"), py::arg("C_out"), py::arg("H_out"), py::arg("labels_out"), py::arg("callback"),
     py::arg("budget"), py::arg("launch"),
     "Masked k-means on the device (init_C == 0: k-means++); centres, presence and labels to the outputs.");

  mod.def("seed_kmeanspp", [](std::vector<ArrayArg> Xs, uintptr_t present, int64_t n, uintptr_t mu, uintptr_t sigma,
                              int64_t K, uint64_t seed, uintptr_t C_out, uintptr_t H_out, LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    run_released([&] {
      seed_kmeanspp(d, reinterpret_cast<const double*>(mu), reinterpret_cast<const double*>(sigma), K, seed,
                    reinterpret_cast<double*>(C_out), reinterpret_cast<uint8_t*>(H_out), L);
      return 0;
    });
  }, py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("mu"), py::arg("sigma"), py::arg("K"),
     py::arg("seed"), py::arg("C_out"), py::arg("H_out"), py::arg("launch"));

  mod.def("complete", [](uintptr_t model, int64_t K, std::vector<ArrayArg> Xs, uintptr_t present, int64_t n,
                         std::vector<ArrayArg> outs, uintptr_t imputed, uintptr_t unfilled, const std::string& mode,
                         double temperature_scale, double temperature, size_t budget, LaunchArg l) {
    DeviceData d = make_data(Xs, present, n);
    Launch L = make_launch(l);
    std::vector<DeviceOutput> ov;
    for (const auto& [ptr, rows, cols, stride, dt] : outs) {
      DeviceOutput o;
      o.data = reinterpret_cast<void*>(ptr);
      o.rows = rows;
      o.cols = cols;
      o.row_stride = stride;
      o.dtype = dtype_of(dt);
      ov.push_back(o);
    }
    const CompletionParams p = ul4m4_bindings::completion_params(mode, temperature_scale, temperature);
    const std::vector<int64_t> dims = dims_of(Xs);
    run_released([&] {
      complete(reinterpret_cast<const void*>(model), K, dims, d, p, ov, reinterpret_cast<uint8_t*>(imputed),
               reinterpret_cast<uint8_t*>(unfilled), budget, L);
      return 0;
    });
  }, py::arg("model"), py::arg("K"), py::arg("Xs"), py::arg("present"), py::arg("n"), py::arg("outs"),
     py::arg("imputed"), py::arg("unfilled"), py::arg("mode"), py::arg("temperature_scale"),
     py::arg("temperature"), py::arg("budget"), py::arg("launch"));
}

// Argument conversions shared by the _core and _cuda bindings: the parameters of a fit and
// of a completion (ul4m4/common.hpp declares them once for both engines), the per-iteration
// Python callback and the history list. Conversions only: no logic of the method.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ul4m4/common.hpp"

namespace ul4m4_bindings {

inline ul4m4::KMeansParams kmeans_params(int64_t n_clusters, int max_iter, double tol, int n_init, uint64_t seed) {
  ul4m4::KMeansParams p;
  p.n_clusters = n_clusters;
  p.max_iter = max_iter;
  p.tol = tol;
  p.n_init = n_init;
  p.seed = seed;
  return p;
}

inline ul4m4::CompletionParams completion_params(const std::string& mode, double temperature_scale,
                                                 double temperature) {
  ul4m4::CompletionParams p;
  if (mode == "greedy") p.mode = ul4m4::CompletionParams::Mode::Greedy;
  else if (mode == "soft") p.mode = ul4m4::CompletionParams::Mode::Soft;
  else throw pybind11::value_error("completion must be 'greedy' or 'soft'");
  p.temperature_scale = temperature_scale;
  p.temperature = temperature;
  return p;
}

/// The engines' per-iteration hook calling a Python callback
/// `callback(iteration, inertia, n_changed, max_shift, seconds)`; a falsy return other than
/// None stops the fit. The engine runs without the GIL: the hook takes it for the call. An
/// exception raised by the callback stops the fit and is re-raised by rethrow() once the
/// engine has returned.
class IterationCallback {
 public:
  explicit IterationCallback(std::optional<pybind11::function> callback) : callback_(std::move(callback)) {}

  /// Empty when no callback was given.
  std::function<bool(const ul4m4::IterationStats&)> hook() {
    if (!callback_) return {};
    return [this](const ul4m4::IterationStats& s) {
      pybind11::gil_scoped_acquire gil;
      try {
        pybind11::object r = (*callback_)(s.iteration, s.inertia, s.n_changed, s.max_shift, s.seconds);
        return r.is_none() || r.cast<bool>();
      } catch (pybind11::error_already_set& e) {
        error_.emplace(std::move(e));
        return false;
      }
    };
  }

  void rethrow() {
    if (error_) throw std::move(*error_);
  }

 private:
  std::optional<pybind11::function> callback_;
  std::optional<pybind11::error_already_set> error_;
};

/// [(iteration, inertia, n_changed, max_shift, seconds, skipped), ...]
inline pybind11::list history_list(const std::vector<ul4m4::IterationStats>& history) {
  pybind11::list out;
  for (const auto& s : history)
    out.append(pybind11::make_tuple(s.iteration, s.inertia, s.n_changed, s.max_shift, s.seconds, s.skipped));
  return out;
}

}  // namespace ul4m4_bindings

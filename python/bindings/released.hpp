// GIL handling shared by the _core and _cuda bindings: the engines' long calls run without
// the GIL and poll for Ctrl-C through the context's `interrupted` callback.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>

namespace ul4m4_bindings {

// The engines' interruption poll: takes the GIL briefly and lets Python run its signal
// handlers; true when one raised (KeyboardInterrupt is then pending).
inline std::function<bool()> python_interrupt_poll() {
  return [] {
    pybind11::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  };
}

// Runs f without the GIL; an interruption (the engine's `Interrupted` exception) re-raises
// the pending Python exception (KeyboardInterrupt) once the GIL is held again.
template <class Interrupted, class F>
auto run_released_as(F&& f) -> decltype(f()) {
  try {
    pybind11::gil_scoped_release nogil;
    return f();
  } catch (const Interrupted&) {
  }
  if (PyErr_Occurred()) throw pybind11::error_already_set();
  throw pybind11::value_error("interrupted");
}

}  // namespace ul4m4_bindings

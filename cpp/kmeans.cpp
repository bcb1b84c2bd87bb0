// Section 4: the masked Lloyd loop (assignment passes in assign.cpp, the update in
// update.cpp) and the restarts from k-means++ seeds (seed.cpp).
#include <chrono>
#include <memory>

#include "assign.hpp"

namespace ul4m4 {
using namespace detail;

namespace {

KMeansResult lloyd(const Dataset& ds, const Normalizer& norm, Centres init, const KMeansParams& p,
                   const RunContext& ctx) {
  using clock = std::chrono::steady_clock;
  KMeansResult r;
  const int64_t chunk = chunk_rows_for(ctx, ds.n);
  Accumulator acc(ds.n, chunk, init.K, norm.d);
  auto model = std::make_unique<Model>(norm, std::move(init), false);
  std::vector<int32_t> labels(ds.n), next(ds.n);
  // Bounded: the same passes, skipping rows whose label is proved (assign.cpp); the
  // labels and update sums are Lloyd's, so are the centres and n_iter.
  std::unique_ptr<Bounds> bounds;
  if (p.algorithm == KMeansParams::Algorithm::Bounded) bounds = std::make_unique<Bounds>(ds, norm, model->K(), ctx);
  double skipped = 0.0;
  auto pass = [&](int32_t* out, const int32_t* prev) {
    return bounds ? bounded_pass(ds, *model, out, prev, acc, ctx, *bounds, &skipped)
                  : assign_pass(ds, *model, out, nullptr, prev, &acc, ctx);
  };
  PassStats st = pass(labels.data(), nullptr);
  r.n_iter = 0;
  while (r.n_iter < p.max_iter) {
    const auto t0 = clock::now();
    Centres c = update_centres(acc, model->centres(), norm, ctx);
    ++r.n_iter;
    const double shift = max_centre_shift(model->centres(), c, norm.d);
    if (bounds) bounds->set_shifts(model->centres(), c, norm);
    model = std::make_unique<Model>(norm, std::move(c), false);
    st = pass(next.data(), labels.data());
    labels.swap(next);
    IterationStats it;
    it.iteration = r.n_iter;
    // The bounded pass knows the distances of the rows it computed only.
    it.inertia = bounds ? std::numeric_limits<double>::quiet_NaN() : st.inertia;
    it.n_changed = st.n_changed;
    it.max_shift = shift;
    it.skipped = bounds ? skipped : 0.0;
    it.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    r.history.push_back(it);
    const bool go_on = !ctx.on_iteration || ctx.on_iteration(it);
    if (st.n_changed == 0 || shift <= p.tol) {
      r.converged = true;
      break;
    }
    if (!go_on) break;
  }
  if (bounds) {
    st.inertia = bounded_inertia(ds, *model, labels.data(), acc.n_blocks, ctx, *bounds);
    if (!r.history.empty()) r.history.back().inertia = st.inertia;
  }
  r.centres = model->centres();
  r.labels = std::move(labels);
  r.inertia = st.inertia;
  r.n_unassigned = st.n_unassigned;
  return r;
}

}  // namespace

KMeansResult kmeans(const Dataset& ds, const Normalizer& norm, const KMeansParams& p,
                    const Centres* init, const RunContext& ctx) {
  if (p.max_iter < 0) throw std::invalid_argument("max_iter must be >= 0");
  const int runs = init ? 1 : std::max(1, p.n_init);
  KMeansResult best;
  bool have = false;
  for (int r = 0; r < runs; ++r) {
    Centres c0 = init ? *init : seed_kmeanspp(ds, norm, p.n_clusters, p.seed + kRestartSeedStride * r, ctx);
    KMeansResult res = lloyd(ds, norm, std::move(c0), p, ctx);
    if (!have || res.n_unassigned < best.n_unassigned ||
        (res.n_unassigned == best.n_unassigned && res.inertia < best.inertia)) {
      best = std::move(res);
      have = true;
    }
  }
  return best;
}

}  // namespace ul4m4

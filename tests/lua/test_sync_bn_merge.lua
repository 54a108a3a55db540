-- test_sync_bn_merge.lua: SyncBatchNorm's statistics ops (ms_batch_norm_stats_packet,
-- ms_batch_norm_merge_stats, ms_batch_norm_param_grads) against an f64 reference (Chan's pairwise merge written out here),
-- bit for bit against the tensor-op merge they replaced (ranks of unequal counts, one of 0), the
-- running-stat update, and errors naming the op and the tensor at fault.
local H = require "harness"
local ms = require "moonseg"
local ffi = require "ffi"
local L, T = require "moonseg.lib", require "moonseg.tensor"
local C_, ctx, h = L.C, L.ctx, T.handle

local function packet(x)
  local out = ffi.new("ms_tensor *[1]")
  L.check(C_.ms_batch_norm_stats_packet(ctx, h(x), out))
  return T.wrap(out[0])
end
-- merge(all, dtype, eps, rm, rv, momentum) -> mean, invstd, mean64, var64, N
local function merge(all, dtype, eps, rm, rv, momentum)
  local out, n = ffi.new("ms_tensor *[4]"), ffi.new("double[1]")
  L.check(C_.ms_batch_norm_merge_stats(ctx, h(all), L.dtypes[dtype], eps, rm and h(rm) or nil,
    rv and h(rv) or nil, momentum or 0.1, out, out + 1, out + 2, out + 3, n))
  return T.wrap(out[0]), T.wrap(out[1]), T.wrap(out[2]), T.wrap(out[3]), n[0]
end

-- Packets [W, 2C+1] from per-rank (count, means, m2s) lists.
local function packets(ranks, C)
  local flat = {}
  for _, r in ipairs(ranks) do
    flat[#flat + 1] = r.n
    for j = 1, C do flat[#flat + 1] = r.n > 0 and r.mean[j] or 0 end
    for j = 1, C do flat[#flat + 1] = r.n > 0 and r.m2[j] or 0 end
  end
  return H.tensor(flat, { #ranks, 2 * C + 1 }, "f64")
end

-- The reference: Chan et al.'s pairwise update, rank by rank, in Lua numbers (f64).
local function chan(ranks, C)
  local n, mean, m2 = 0, {}, {}
  for j = 1, C do mean[j], m2[j] = 0, 0 end
  for _, r in ipairs(ranks) do
    if r.n > 0 then
      local nn_ = n + r.n
      for j = 1, C do
        local d = r.mean[j] - mean[j]
        mean[j] = mean[j] + d * r.n / nn_
        m2[j] = m2[j] + r.m2[j] + d * d * n * r.n / nn_
      end
      n = nn_
    end
  end
  local var = {}
  for j = 1, C do var[j] = m2[j] / n end
  return mean, var, n
end

local function random_ranks(rnd, counts, C)
  local ranks = {}
  for i, n in ipairs(counts) do
    local r = { n = n, mean = {}, m2 = {} }
    for j = 1, C do
      r.mean[j] = 3 * rnd() + i -- rank means apart: the between-rank term matters
      r.m2[j] = n * (0.5 + rnd() * rnd())
    end
    ranks[i] = r
  end
  return ranks
end

H.case("merge_stats equals Chan's pairwise merge (counts 5, 0, 3, 1; f64 and f32)", function()
  local rnd, C = H.rng(11, 0, 1), 6
  local ranks = random_ranks(rnd, { 5, 0, 3, 1 }, C)
  local rmean, rvar, rn = chan(ranks, C)
  for _, dt in ipairs { "f64", "f32" } do
    local mean, invstd, mean64, var64, N = merge(packets(ranks, C), dt, 1e-5)
    H.eq(N, rn, "total count")
    H.eq(mean:type(), dt, "mean dtype")
    H.eq(invstd:type(), dt, "invstd dtype")
    H.near(H.values(mean64), rmean, 1e-13, "f64 mean")
    H.near(H.values(var64), rvar, 1e-12, "f64 var")
    local inv = {}
    for j = 1, C do inv[j] = 1 / math.sqrt(rvar[j] + 1e-5) end
    H.near(H.values(invstd), inv, dt == "f32" and 1e-6 or 1e-12, dt .. " invstd")
    H.near(H.values(mean), rmean, dt == "f32" and 1e-6 or 1e-13, dt .. " mean")
  end
  -- one rank alone: its own statistics
  local one = { ranks[3] }
  local _, _, m1, v1, n1 = merge(packets(one, C), "f64", 0)
  H.eq(n1, 3)
  for j = 1, C do
    H.near(H.values(m1)[j], ranks[3].mean[j], 1e-15)
    H.near(H.values(v1)[j], ranks[3].m2[j] / 3, 1e-15)
  end
end)

H.case("stats_packet is (count, batch_norm_moments' mean, count * var); an empty shard sends zeros", function()
  local rnd = H.rng(3)
  local x = H.rand_tensor(rnd, { 3, 4, 5, 2 }, "f32")
  local p = H.values(packet(x))
  H.eq(#p, 9)
  H.eq(p[1], 30, "count = N * H * W")
  local out = ffi.new("ms_tensor *[1]")
  L.check(C_.ms_batch_norm_moments(ctx, h(x), out))
  local mv = H.values(T.wrap(out[0]))
  for j = 1, 4 do
    H.eq(p[1 + j], mv[j], "mean " .. j)
    H.eq(p[5 + j], mv[4 + j] * 30, "m2 " .. j)
  end
  local z = H.values(packet(ms.zeros(0, 4, 5, 2)))
  H.eq(#z, 9)
  for i = 1, 9 do H.eq(z[i], 0, "empty packet " .. i) end
end)

-- The merge as SyncBatchNorm did it with tensor ops before these kernels (kept verbatim), and
-- its running-stat update: the kernels must give the same bits so 2 x B trains as before.
local function tensor_merge(all, C, eps, rm, rv, momentum, dt)
  local counts = all:narrow(2, 1, 1)
  local N = counts:sum():item()
  local means, m2s = all:narrow(2, 2, C), all:narrow(2, C + 2, C)
  local mean = (means * counts):sum(1) / N
  local dev = means - mean:view(1, C)
  local var = (m2s + counts * dev * dev):sum(1) / N
  mean, var = mean:view(C), var:view(C)
  rm:mul_(1 - momentum):add_(mean:to(rm:type()) * momentum)
  local unbiased = N > 1 and var * (N / (N - 1)) or var
  rv:mul_(1 - momentum):add_(unbiased:to(rv:type()) * momentum)
  return mean:to(dt), (var + eps):rsqrt():to(dt), mean, var, N
end

local function same_bits(a, b, what)
  H.eq(a:type(), b:type(), what .. " dtype")
  local va, vb = H.values(a), H.values(b)
  H.eq(#va, #vb, what .. " size")
  for i = 1, #va do
    if va[i] ~= vb[i] then error(string.format("%s [%d]: got %.17g, want %.17g", what, i, va[i], vb[i]), 2) end
  end
end

H.case("merge_stats and its running-stat update are bit for bit the former tensor-op merge", function()
  local rnd = H.rng(29, 0, 1)
  for trial, counts in ipairs { { 4096, 1024 }, { 2048, 0 }, { 7, 3, 0, 12 }, { 1 } } do
    local C = 16
    -- packets from real moments of random data (f32 input), shifted per rank
    local rows = {}
    for i, n in ipairs(counts) do
      local x = H.rand_tensor(rnd, { n, C, 1, 1 }, "f32") + (i * 0.37 + trial)
      rows[i] = packet(x):view(1, 2 * C + 1)
    end
    local all = ms.cat(rows, 1):contiguous()
    for _, dt in ipairs { "f32", "f64" } do
      local rm1, rv1 = H.rand_tensor(rnd, { C }, dt), H.rand_tensor(rnd, { C }, dt) + 2
      local rm2, rv2 = rm1:clone(), rv1:clone()
      local a = { merge(all, dt, 1e-5, rm1, rv1, 0.1) }
      local b = { tensor_merge(all, C, 1e-5, rm2, rv2, 0.1, dt) }
      local what = "counts {" .. table.concat(counts, ",") .. "} " .. dt .. " "
      for k, name in ipairs { "mean", "invstd", "mean64", "var64" } do same_bits(a[k], b[k], what .. name) end
      H.eq(a[5], b[5], what .. "count")
      same_bits(rm1, rm2, what .. "running_mean")
      same_bits(rv1, rv2, what .. "running_var")
    end
  end
end)

-- param_grads(sums, invstd, dtype, want_w, want_b) -> dw, db
local function param_grads(sums, invstd, dtype, want_w, want_b)
  local out = ffi.new("ms_tensor *[2]")
  L.check(C_.ms_batch_norm_param_grads(ctx, h(sums), h(invstd), L.dtypes[dtype], want_w and out or nil,
    want_b and out + 1 or nil))
  return want_w and T.wrap(out[0]) or nil, want_b and T.wrap(out[1]) or nil
end

H.case("param_grads: dweight = sum(g (x - mean)) * invstd, dbias = sum(g), as the former tensor ops", function()
  local sums = H.tensor({ 1.5, -2, 0.25, 3, -0.125, 1e-3 }, { 2, 3 })
  local invstd = H.tensor({ 2, 0.5, 4 }, { 3 }, "f32")
  local dw, db = param_grads(sums, invstd, "f64", true, true)
  H.same_list(H.values(dw), { 6, -0.0625, 4e-3 })
  H.same_list(H.values(db), { 1.5, -2, 0.25 })
  local rnd = H.rng(41)
  local s2, inv2 = H.rand_tensor(rnd, { 2, 24 }), H.rand_tensor(H.rng(42, 0.1, 3), { 24 }, "f32")
  for _, pd in ipairs { "f32", "bf16", "f64" } do
    local w, b = param_grads(s2, inv2, pd, true, true)
    same_bits(w, (s2:select(1, 2) * inv2:to("f64")):to(pd), pd .. " dweight")
    same_bits(b, s2:select(1, 1):clone():to(pd), pd .. " dbias")
  end
  local w_only, none = param_grads(s2, inv2, "f32", true, false)
  H.eq(w_only:numel(), 24)
  H.eq(none, nil)
end)

H.case("bad input names the op and the tensor", function()
  local ok = H.tensor({ 2, 1, 1, 3, 4, 0.5, 0.5 }, { 1, 7 })
  H.raises(function() merge(ok:to("f32"), "f32", 1e-5) end, "batch_norm_merge_stats", "gathered", "f32")
  H.raises(function() merge(ms.zeros(2, 6, { dtype = "f64" }), "f32", 1e-5) end, "batch_norm_merge_stats", "gathered", "[2, 6]")
  H.raises(function() merge(ms.zeros(7, { dtype = "f64" }), "f32", 1e-5) end, "batch_norm_merge_stats", "gathered")
  H.raises(function() merge(ms.zeros(7, 2, { dtype = "f64" }):t(), "f32", 1e-5) end, "batch_norm_merge_stats", "contiguous")
  H.raises(function() merge(ok, "i64", 1e-5) end, "batch_norm_merge_stats", "dtype")
  H.raises(function() merge(ok, "f32", -1) end, "batch_norm_merge_stats", "eps")
  H.raises(function() merge(ok, "f32", 1e-5, ms.zeros(4)) end, "batch_norm_merge_stats", "running_mean", "[4]")
  H.raises(function() merge(ok, "f32", 1e-5, ms.zeros(3), ms.zeros(3, { dtype = "i64" })) end,
    "batch_norm_merge_stats", "running_var")
  H.raises(function() merge(ms.zeros(2, 7, { dtype = "f64" }), "f32", 1e-5) end,
    "batch_norm_merge_stats", "every rank's batch is empty")
  H.raises(function() packet(ms.zeros(5)) end, "batch_norm_stats_packet", "input", "[5]")
  H.raises(function() packet(ms.zeros(2, 3, { dtype = "i64" })) end, "batch_norm_stats_packet", "input")
  local sums, inv = ms.zeros(2, 3, { dtype = "f64" }), ms.ones(3)
  H.raises(function() param_grads(sums:to("f32"), inv, "f32", true, true) end, "batch_norm_param_grads", "sums", "f32")
  H.raises(function() param_grads(ms.zeros(2, 4, { dtype = "f64" }), inv, "f32", true, true) end,
    "batch_norm_param_grads", "sums", "[2, 4]")
  H.raises(function() param_grads(sums, ms.ones(3, 1), "f32", true, true) end, "batch_norm_param_grads", "invstd")
  H.raises(function() param_grads(sums, inv, "i32", true, true) end, "batch_norm_param_grads", "dtype")
  -- a failed merge leaves the running stats alone
  local rm = ms.ones(3)
  pcall(merge, ms.zeros(2, 7, { dtype = "f64" }), "f32", 1e-5, rm, nil, 0.5)
  H.same_list(H.values(rm), { 1, 1, 1 })
end)

H.done()

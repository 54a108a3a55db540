-- sync_bn.lua: SyncBatchNorm, batch normalization whose batch statistics span every rank of
-- the process group (count-weighted, so ranks may hold different batch sizes). Sums run in f64 on
-- plain batch normalization's kernels, so N ranks x B round like one process with N*B. State-dict
-- names are nn.BatchNorm2d's (weight, bias, _mean, _variance): checkpoints load either way.
-- With one process (or in eval mode) it is plain batch normalization.
local Module = require "moonseg.nn.module"

return function(nn, ms)
  local F, A, dist = ms.functional, require "moonseg.autograd", require "moonseg.dist"

  -- The channel count of an [N, C, ...] input.
  local function layout(x)
    if x:dim() < 2 then
      error("SyncBatchNorm: input must be [N, C, ...], got [" .. table.concat(x:size(), ", ") .. "] " .. x:type(), 3)
    end
    return x:size(2)
  end

  local ffi = require "ffi"
  local L, T = require "moonseg.lib", require "moonseg.tensor"
  local C_, ctx, out = L.C, L.ctx, L.out
  local h = T.handle

  -- Global statistics over all ranks: each rank all-gathers its packet (count, mean, count *
  -- biased variance; moments summed in f64 by batch_norm's own kernel) and one C op does Chan's
  -- merge of the packets (exact up to rounding), the running-stat update included. Returns mean and
  -- invstd in x's dtype, the f64 mean and variance, and the total count.
  local nout = ffi.new("double[1]")
  local function global_stats(x, rm, rv, momentum, eps)
    L.check(C_.ms_batch_norm_stats_packet(ctx, h(x), out))
    local all = dist.all_gather_into_tensor(T.wrap(out[0])) -- [W, 2C + 1]
    L.check(C_.ms_batch_norm_merge_stats(ctx, h(all), x:dtype_code(), eps, rm and h(rm) or nil,
      rv and h(rv) or nil, momentum, out, out + 1, out + 2, out + 3, nout), 3)
    return T.wrap(out[0]), T.wrap(out[1]), T.wrap(out[2]), T.wrap(out[3]), nout[0]
  end

  -- The backward of plain batch_norm with the per-channel sums reduced over the ranks: each
  -- rank sums its part (f64, batch_norm's kernel), the all-reduce adds them, and dx comes from
  -- batch_norm's affine kernel with the global sums and count.
  local function sync_backward(node, g)
    local s = node.saved
    local want_x, want_w, want_b = node.next[1], node.next[2], node.next[3]
    -- this rank's sum(g) and sum(g * (x - mean)), f64 [2, C]
    L.check(C_.ms_batch_norm_grad_sums(ctx, h(g), h(s.x), h(s.mean), out))
    local sums = T.wrap(out[0])
    local pd = (s.w or s.x):dtype_code()
    -- weight and bias get this rank's share (one call); data parallel averages them afterwards
    local dw, db
    if want_w or want_b then
      L.check(C_.ms_batch_norm_param_grads(ctx, h(sums), h(s.invstd), pd, want_w and out + 1 or nil,
        want_b and out + 2 or nil))
      dw, db = want_w and T.wrap(out[1]) or nil, want_b and T.wrap(out[2]) or nil
    end
    local dx
    if want_x then
      -- the statistics depend on every rank's input: reduce the per-channel sums globally
      dist.all_reduce(sums, "sum")
      L.check(C_.ms_batch_norm_backward_global(ctx, h(g), h(s.x), s.w and h(s.w) or nil, h(s.mean),
        h(s.invstd), h(sums), s.N, out))
      dx = T.wrap(out[0])
    end
    return dx, dw, db
  end

  -- sync_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
  -- F.batch_norm's arguments (momentum as in PyTorch: the weight of the batch statistics).
  local function sync_batch_norm(x, rm, rv, w, b, training, momentum, eps)
    if not training or not dist.is_initialized() or dist.get_world_size() == 1 then
      return F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    end
    layout(x)
    local y, mean, invstd, N
    A.no_grad(function()
      local mean64, var64
      mean, invstd, mean64, var64, N = global_stats(x, rm, rv, momentum, eps)
      -- normalise with the global statistics: batch_norm in inference form
      y = F.batch_norm(x, mean64, var64, w, b, false, 0, eps)
    end)
    if A.needs(x, w, b) then
      A.record("sync_batch_norm", { x, w, b }, { y }, sync_backward, { x = A.save(x), w = A.save(w),
        mean = mean, invstd = invstd, N = N })
    end
    return y
  end
  F.sync_batch_norm = sync_batch_norm

  -- SyncBatchNorm(C, {momentum=0.9, epsilon=1e-5}): Paddle's momentum (weight of the running value).
  nn.SyncBatchNorm = Module.class("SyncBatchNorm", nn.BatchNorm2d)
  function nn.SyncBatchNorm:forward(x)
    return sync_batch_norm(x, self._mean, self._variance, self.weight, self.bias, self.training,
      1 - self.momentum, self.epsilon)
  end

  -- A SyncBatchNorm sharing bn's parameters and buffers (no copies).
  function nn.SyncBatchNorm.from_batch_norm(bn)
    local s = nn.SyncBatchNorm(bn.num_features, { momentum = bn.momentum, epsilon = bn.epsilon })
    s.weight, s.bias = bn.weight, bn.bias
    s._mean, s._variance = bn._mean, bn._variance
    s.training = bn.training
    return s
  end
end

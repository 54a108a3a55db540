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

  local L, T = require "moonseg.lib", require "moonseg.tensor"
  local C_, ctx, out = L.C, L.ctx, L.out
  local h = T.handle

  -- Global per-channel mean and biased variance over all ranks (f64), and the total count.
  -- Each rank sends (count, its mean, its sum of squared deviations), its moments summed in
  -- f64 by batch_norm's own kernel; Chan's merge of those is exact up to rounding.
  local function global_stats(x, C)
    local n = x:numel() / C
    local st = ms.zeros(2 * C + 1, { dtype = "f64", device = x:device_str() })
    st:narrow(1, 1, 1):fill_(n)
    if n > 0 then
      L.check(C_.ms_batch_norm_moments(ctx, h(x), out))
      local mv = T.wrap(out[0])
      st:narrow(1, 2, C):copy_(mv:select(1, 1))
      st:narrow(1, C + 2, C):copy_(mv:select(1, 2) * n)
    end
    local all = dist.all_gather_into_tensor(st) -- [W, 2C + 1]
    local counts = all:narrow(2, 1, 1)          -- [W, 1]
    local N = counts:sum():item()
    if N < 1 then error("SyncBatchNorm: every rank's batch is empty", 3) end
    local means, m2s = all:narrow(2, 2, C), all:narrow(2, C + 2, C)
    local mean = (means * counts):sum(1) / N
    local dev = means - mean:view(1, C)
    local var = (m2s + counts * dev * dev):sum(1) / N
    return mean, var, N
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
    local pd = s.w and s.w:type() or s.x:type()
    -- weight and bias get this rank's share; data parallel averages them afterwards
    local dw = want_w and (sums:select(1, 2) * s.invstd:to("f64")):to(pd) or nil
    local db = want_b and sums:select(1, 1):clone():to(pd) or nil
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
    local C = layout(x)
    local y, mean, invstd, N
    A.no_grad(function()
      local mean64, var64
      mean64, var64, N = global_stats(x, C)
      local dt = x:type()
      mean, invstd = mean64:to(dt), (var64 + eps):rsqrt():to(dt)
      if rm then rm:mul_(1 - momentum):add_(mean64:to(rm:type()) * momentum) end
      if rv then
        local unbiased = N > 1 and var64 * (N / (N - 1)) or var64
        rv:mul_(1 - momentum):add_(unbiased:to(rv:type()) * momentum)
      end
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

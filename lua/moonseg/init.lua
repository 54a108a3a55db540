-- moonseg: semantic-segmentation training on a C core; this module assembles the Lua API.
local L = require "moonseg.lib"
local Tensor = require "moonseg.tensor"
local A = require "moonseg.autograd"
local ffi = require "ffi"

local ms = {
  Tensor = Tensor,
  autograd = A,
  lib = L,
  no_grad = A.no_grad,
  enable_grad = A.enable_grad,
  is_grad_enabled = A.is_enabled,
  set_grad_enabled = A.set_enabled,
  is_tensor = Tensor.is_tensor,
  version = "0.1.0",
}
for k, v in pairs(Tensor.M) do ms[k] = v end

-- The default random generator (Philox: seed + offset is the whole state).
ms.default_generator = ffi.new("ms_generator", { seed = 0, offset = 0 })
function ms.manual_seed(seed)
  ms.default_generator.seed = seed
  ms.default_generator.offset = 0
end
function ms.get_rng_state() return { seed = tonumber(ms.default_generator.seed), offset = tonumber(ms.default_generator.offset) } end
function ms.set_rng_state(s)
  ms.default_generator.seed = s.seed
  ms.default_generator.offset = s.offset
end

function ms.set_num_threads(n) L.check(L.C.ms_context_set_num_threads(L.ctx, n)) end
function ms.get_num_threads() return L.C.ms_context_num_threads(L.ctx) end
-- Batch invariance (on by default): a sample's results do not depend on the rest of its batch, so
-- N workers x B train like 1 x N*B (CPU: no batched Winograd forward or backward-data convolution,
-- whose per-sample result changes with the minibatch); off trades that for batched Winograd.
function ms.set_batch_invariant(on) L.check(L.C.ms_context_set_batch_invariant(L.ctx, on and 1 or 0)) end
function ms.get_batch_invariant() return L.C.ms_context_batch_invariant(L.ctx) == 1 end
function ms.has_cuda() return L.C.ms_has_cuda() == 1 end
function ms.build_info() return ffi.string(L.C.ms_build_info()) end

-- Host memory held by live tensors: {allocated=, reserved=, peak=, storages=}.
function ms.memory_stats(device)
  local dt, di = Tensor.device_arg(device)
  local s = ffi.new("ms_memory_stats")
  L.check(L.C.ms_memory_stats_get(dt, di, s))
  return { allocated = tonumber(s.allocated), reserved = tonumber(s.reserved),
           peak = tonumber(s.peak), storages = tonumber(s.storages) }
end
-- Gives cached free blocks back to the system (allocated stays, reserved drops).
function ms.empty_cache(device)
  local dt, di = Tensor.device_arg(device)
  L.check(L.C.ms_memory_empty_cache(dt, di))
end
function ms.reset_peak_memory(device)
  local dt, di = Tensor.device_arg(device)
  L.check(L.C.ms_memory_stats_reset_peak(dt, di))
end

-- Monotonic wall-clock seconds (for timing steps; os.clock counts CPU time of all threads).
function ms.time() return L.C.ms_time_now() end

-- Frees every tensor whose Lua handle is unreachable, now.
function ms.collect() collectgarbage() end

ms.functional = require "moonseg.functional"

-- Op families: each file adds methods to Tensor and functions to ms.
for _, family in ipairs { "views", "elementwise", "reduce", "random", "linalg", "conv", "norm",
  "pool", "resize", "join", "softmax" } do
  require("moonseg.ops." .. family)(ms, Tensor, A, L)
end

require "moonseg.serialize"(ms, Tensor, L)

-- Modules that require "moonseg" themselves load once ms is complete.
package.loaded.moonseg = ms
-- Mixed precision: the autocast policy wraps the ops before any module captures them.
ms.amp = require "moonseg.amp"
ms.amp.install()
ms.autocast = ms.amp.autocast
ms.nn = require "moonseg.nn"
ms.optim = require "moonseg.optim"
ms.losses = require "moonseg.losses"
ms.metrics = require "moonseg.metrics"
ms.tensorboard = require "moonseg.tensorboard"
ms.dist = require "moonseg.dist"
ms.models = require "moonseg.models"
ms.image = require "moonseg.image"
ms.data = require "moonseg.data"

ms.cuda = require "moonseg.cuda"

return ms

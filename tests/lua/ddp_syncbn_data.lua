-- ddp_syncbn_data.lua: the 4-sample batch of the SyncBatchNorm tests (ddp_worker.lua's syncbn
-- mode and test_ddp.lua): f64, or f32 on a badly conditioned batch (mean 50 times the spread,
-- an upstream gradient that is nearly constant) where f32 sums lose digits plain BatchNorm keeps.
local ms = require "moonseg"

return function(dtype)
  ms.manual_seed(7)
  if dtype == "f32" then
    local o = { dtype = "f32" }
    return { x = ms.randn({ 4, 5, 24, 24 }, o):add(50), c = ms.randn({ 4, 5, 24, 24 }, o):mul(0.01):add(1),
      w = ms.randn({ 5 }, o), b = ms.randn({ 5 }, o), mean = ms.zeros({ 5 }, o), var = ms.ones({ 5 }, o) }
  end
  local o = { dtype = "f64" }
  return { x = ms.randn({ 4, 5, 3, 2 }, o), c = ms.randn({ 4, 5, 3, 2 }, o), w = ms.randn({ 5 }, o),
    b = ms.randn({ 5 }, o), mean = ms.randn({ 5 }, o), var = ms.ones({ 5 }, o) }
end

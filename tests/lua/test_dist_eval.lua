-- test_dist_eval.lua: distributed evaluation counts every validation image once. The ranks are
-- run one after another in this process (the sampler only needs rank and world size); the
-- all_reduce hook adds the other ranks' confusion matrices, as dist.all_reduce would.
local H = require "harness"
local ms = require "moonseg"
local evaluate = require "moonseg.engine.evaluate"

local ds = ms.data.Synthetic { mode = "val" }
ms.manual_seed(3)
local model = ms.nn.Conv2d(3, 5, 1)
local tf = ms.data.transforms.Compose { ms.data.transforms.Normalize() }

local function run(rank, world, all_reduce)
  return evaluate.evaluate(model, ds, { transforms = tf, num_classes = 5, rank = rank, world_size = world,
    all_reduce = all_reduce, print = false })
end

H.case("3 ranks on a 40-image set (wrapped to 42) give the single-process metrics exactly", function()
  H.eq(ds:size() % 3 ~= 0, true, "the set is not a multiple of the world size")
  local one = run(0, 1)
  local mats = {}
  for r = 1, 2 do run(r, 3, function(t) mats[#mats + 1] = t:clone(); return t end) end
  local cm
  local d = run(0, 3, function(t)
    for _, m in ipairs(mats) do t:add_(m) end
    cm = t:clone()
    return t
  end)
  local single
  run(0, 1, function(t) single = t:clone(); return t end)
  H.same_list(cm:reshape(-1):tolist(), single:reshape(-1):tolist(), "confusion matrix")
  H.eq(d.miou, one.miou, "mIoU")
  H.eq(d.acc, one.acc, "accuracy")
  H.eq(d.kappa, one.kappa, "kappa")
end)

H.done()

-- custom_loop.lua: a training loop written by hand from the raw API — data set, loader,
-- model, loss, optimizer, schedule, evaluation — with no engine in between.
--   luajit recipes/custom_loop.lua [iters]
local root = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path

local ms = require "moonseg"
local T, F = ms.data.transforms, ms.functional

local iters = tonumber(arg and arg[1]) or 60
ms.manual_seed(0)

-- Data: the built-in synthetic set, randomly scaled, cropped and flipped.
local train_set = ms.data.Synthetic { mode = "train" }
local val_set = ms.data.Synthetic { mode = "val" }
local augment = T.Compose { T.ResizeStepScaling(0.5, 1.5, 0.25), T.RandomPaddingCrop { 96, 96 },
  T.RandomHorizontalFlip(), T.Normalize() }
local loader = ms.data.DataLoader(train_set, { batch_size = 8, shuffle = true, drop_last = true,
  transforms = augment, num_workers = 2, seed = 0 })

-- Model, optimizer and a polynomial learning-rate decay.
local model = ms.models.PPLiteSeg { num_classes = train_set.num_classes, backbone = "STDC1" }
local opt = ms.optim.SGD { model, lr = 0.05, momentum = 0.9, weight_decay = 4e-5 }
local lr_at = ms.optim.PolynomialDecay { learning_rate = 0.05, decay_steps = iters, power = 0.9 }

model:train()
local first, last
for it = 1, iters do
  local images, labels = loader:next()
  images, labels = images:to(model:device()), labels:to(model:device()) -- batches come from the host
  local logits = model(images) -- three heads in training mode
  local loss = F.cross_entropy(logits[1], labels) + F.cross_entropy(logits[2], labels) +
    F.cross_entropy(logits[3], labels)
  opt.lr = lr_at(it - 1)
  opt:zero_grad()
  loss:backward()
  opt:step()
  last = loss:item()
  first = first or last
  if it % 10 == 0 then print(string.format("iter %d/%d  loss %.4f  lr %.5f", it, iters, last, opt.lr)) end
end
loader:close()

-- Evaluation: whole validation images, argmax, confusion matrix.
model:eval()
local cm = ms.metrics.ConfusionMatrix(val_set.num_classes)
local val_loader = ms.data.DataLoader(val_set, { batch_size = 1, transforms = T.Compose { T.Normalize() } })
ms.no_grad(function()
  for _ = 1, val_loader:batches_per_epoch() do
    local image, label = val_loader:next()
    image, label = image:to(model:device()), label:to(model:device())
    cm:update(model(image)[1], label)
  end
end)
local m = cm:compute()
print(string.format("loss %.4f -> %.4f; validation %s", first, last, ms.metrics.format(m)))
if not (last < first) then
  io.stderr:write("custom_loop: the loss did not fall\n")
  os.exit(1)
end

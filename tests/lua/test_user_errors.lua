-- test_user_errors.lua: user errors (a missing data set root, a label outside [0, num_classes),
-- a directory that is not a checkpoint, a missing model file) end the recipes with the message
-- alone and exit status 1; MOONSEG_DEBUG=1 adds the traceback; internal errors keep it.
local H = require "harness"
local ms = require "moonseg"
local E = require "moonseg.errors"

local src = os.getenv("MOONSEG_SOURCE_DIR") or "."
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp .. "/ds/images " .. tmp .. "/ds/labels")

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"EXIT:$?\"")
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("EXIT:(%d+)%s*$"))
end
local function user_failure(out, code, ...)
  H.eq(code, 1, "exit status; output:\n" .. out)
  for _, frag in ipairs { ... } do
    if not out:find(frag, 1, true) then error("output lacks '" .. frag .. "':\n" .. out, 2) end
  end
  if out:find("stack traceback", 1, true) then error("a user error printed a traceback:\n" .. out, 2) end
end

-- A PaddleSeg-format set whose second label is all class 7 (num_classes 5).
for i = 1, 2 do
  ms.image.write_png(string.format("%s/ds/images/%d.png", tmp, i), (ms.rand(32, 32, 3) * 255):to("u8"))
  local lab = ms.zeros({ 32, 32 }, { dtype = "u8" })
  if i == 2 then lab:fill_(7) end -- every pixel: no augmentation can crop it away
  ms.image.write_png(string.format("%s/ds/labels/%d.png", tmp, i), lab)
end
for _, split in ipairs { "train", "val" } do
  local f = assert(io.open(tmp .. "/ds/" .. split .. "_list.txt", "w"))
  f:write("images/1.png labels/1.png\nimages/2.png labels/2.png\n")
  f:close()
end
local recipe = "luajit " .. src .. "/recipes/pp_liteseg.lua --num_classes 5 --backbone STDC1 --iters 1 " ..
  "--batch_size 2 --crop_size 32 32 --num_workers 0 --save_dir " .. tmp .. "/out "

H.case("the error type: raised, recognised, printable, concatenable", function()
  local ok, e = pcall(E.user, "bad thing")
  H.eq(ok, false)
  H.eq(E.is_user(e), true)
  H.eq(tostring(e), "bad thing")
  H.eq("ctx: " .. e, "ctx: bad thing")
  H.eq(E.is_user("bad thing"), false)
  local ok2, e2 = pcall(E.as_user, ms.load, tmp .. "/nope.safetensors")
  H.eq(ok2, false)
  H.eq(E.is_user(e2), true)
  assert(tostring(e2):find(tmp .. "/nope.safetensors", 1, true), tostring(e2))
end)

H.case("a missing data set root: the message alone, status 1; MOONSEG_DEBUG=1 adds the traceback", function()
  local out, code = sh(recipe .. "--dataset_root " .. tmp .. "/missing")
  user_failure(out, code, "recipes/pp_liteseg.lua: ", "dataset root " .. tmp .. "/missing")
  out, code = sh("MOONSEG_DEBUG=1 " .. recipe .. "--dataset_root " .. tmp .. "/missing")
  H.eq(code, 1)
  assert(out:find("dataset root " .. tmp .. "/missing", 1, true) and out:find("stack traceback", 1, true), out)
end)

H.case("a label outside [0, num_classes): names the file and list line, no traceback", function()
  local out, code = sh(recipe .. "--dataset_root " .. tmp .. "/ds")
  user_failure(out, code, "labels/2.png", "train_list.txt:2", "outside [0, 5)")
end)

H.case("resuming from a directory that is not a checkpoint", function()
  os.execute("mkdir -p " .. tmp .. "/notckpt")
  local out, code = sh(recipe .. "--dataset_root " .. tmp .. "/ds --resume_model " .. tmp .. "/notckpt")
  user_failure(out, code, tmp .. "/notckpt", "is not a moonseg checkpoint")
end)

H.case("val.lua and predict.lua with a missing model file", function()
  local out, code = sh("luajit " .. src .. "/recipes/val.lua --model_path " .. tmp .. "/none --dataset_root " .. tmp .. "/ds")
  user_failure(out, code, "recipes/val.lua: ", tmp .. "/none/model.safetensors")
  out, code = sh("luajit " .. src .. "/recipes/predict.lua --model_path " .. tmp .. "/m.safetensors --image_path " .. tmp .. "/ds/images")
  user_failure(out, code, "recipes/predict.lua: ", tmp .. "/m.safetensors")
end)

H.case("an internal error keeps its traceback", function()
  local script = tmp .. "/internal.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local recipe = require "moonseg.engine.recipe"
local cfg = recipe.parse({ iters = 1, batch_size = 1, learning_rate = 0.1, num_classes = 2 }, {}, "internal.lua")
recipe.run(cfg, function() local parts = nil; return parts.model end)
]])
  f:close()
  local out, code = sh("luajit " .. script)
  H.eq(code, 1, out)
  assert(out:find("internal.lua: ", 1, true) and out:find("attempt to index", 1, true) and
    out:find("stack traceback", 1, true), out)
end)

os.execute("rm -rf " .. tmp)
H.done()

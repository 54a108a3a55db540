-- test_checkpoint_partial.lua: checkpoint saves killed half-way leave only a hidden
-- .NAME.partial directory, never listed as a checkpoint and removed by the next run's
-- remove_partials; the library's directory operations (csrc/io/fs.c) and their errors.
local H = require "harness"
local ms = require "moonseg"
local ckpt = require "moonseg.engine.checkpoint"

local tmp = os.tmpname()
os.remove(tmp)
ckpt.mkdir(tmp)

local function sorted(t)
  table.sort(t)
  return t
end
local function visible(dir)
  local r = {}
  for _, n in ipairs(ckpt.list_dir(dir)) do if n:sub(1, 1) ~= "." then r[#r + 1] = n end end
  return sorted(r)
end
local function touch(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text or "x")
  f:close()
end

H.case("directory operations: mkdirs, list, remove_tree, errors naming the path", function()
  local d = tmp .. "/a/b/c"
  ckpt.mkdir(d)
  ckpt.mkdir(d) -- existing: fine
  touch(d .. "/f1")
  touch(tmp .. "/a/b/f2")
  ckpt.mkdir(tmp .. "/a/b/e") -- empty directory
  H.same_list(sorted(ckpt.list_dir(tmp .. "/a/b")), { "c", "e", "f2" })
  H.same_list(ckpt.list_dir(tmp .. "/a/b/e"), {})
  -- a symbolic link to outside is removed, not followed
  ckpt.mkdir(tmp .. "/keep")
  touch(tmp .. "/keep/precious")
  os.execute("ln -s " .. tmp .. "/keep " .. tmp .. "/a/b/c/link")
  ckpt.remove_tree(tmp .. "/a")
  H.eq(ckpt.exists(tmp .. "/a"), false)
  H.eq(ckpt.exists(tmp .. "/keep/precious"), true, "followed a symlink out of the tree")
  ckpt.remove_tree(tmp .. "/a") -- absent: fine
  H.raises(function() ckpt.list_dir(tmp .. "/nope") end, tmp .. "/nope")
  touch(tmp .. "/plainfile")
  H.raises(function() ckpt.mkdir(tmp .. "/plainfile/sub") end, "cannot create directory", tmp .. "/plainfile")
  H.raises(function() ckpt.mkdir(tmp .. "/plainfile") end, tmp .. "/plainfile", "in the way")
end)

local model = ms.nn.Conv2d(3, 4, 1)

H.case("a save works under a hidden name and leaves nothing else behind", function()
  local dir = tmp .. "/clean"
  ckpt.save(dir .. "/iter_2", { model = model, state = { iter = 2 } })
  ckpt.save(dir .. "/iter_2", { model = model, state = { iter = 2, again = true } }) -- replaces
  ckpt.save(dir .. "/best_model", { model = model, state = { iter = 2 } })
  H.same_list(sorted(ckpt.list_dir(dir)), { "best_model", "iter_2" })
  H.same_list(sorted(ckpt.list_dir(dir .. "/iter_2")), { "model.safetensors", "state.json" })
  H.eq(ckpt.load(dir .. "/iter_2").state.again, true)
end)

-- A real process killed by SIGKILL in the middle of a save (right after the first file of the
-- checkpoint is written: deterministic, no timing involved).
H.case("kill -9 during a save: a hidden partial, never a checkpoint, removed by the next run", function()
  local dir = tmp .. "/killed"
  local child = tmp .. "/child.lua"
  touch(child, string.format([[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void); int kill(int pid, int sig);")
local ms = require "moonseg"
local ckpt = require "moonseg.engine.checkpoint"
local model = ms.nn.Conv2d(3, 4, 1)
ckpt.save(%q .. "/iter_5", { model = model, state = { iter = 5 } })
local save = ms.save
ms.save = function(...)
  save(...)
  io.stdout:write("killing myself mid-save\n")
  io.stdout:flush()
  ffi.C.kill(ffi.C.getpid(), 9)
end
ckpt.save(%q .. "/iter_7", { model = model, optimizer = nil, state = { iter = 7 } })
io.stdout:write("not reached\n")
]], dir, dir))
  local p = io.popen("luajit " .. child .. " 2>&1; echo EXIT:$?")
  local out = p:read("*a")
  p:close()
  assert(out:find("killing myself mid-save", 1, true) and out:find("EXIT:137", 1, true), out)
  -- what a user sees: the finished checkpoint only; the unfinished one is hidden
  H.same_list(visible(dir), { "iter_5" }, "visible entries after the kill")
  H.same_list(sorted(ckpt.list_dir(dir)), { ".iter_7.partial", "iter_5" })
  H.same_list(ckpt.list_iters(dir), { 5 })
  -- leftovers of older versions' visible temporaries are recognised too, even with a state.json
  ckpt.mkdir(dir .. "/iter_4.tmp.5895846")
  touch(dir .. "/iter_4.tmp.5895846/state.json", "{}")
  ckpt.mkdir(dir .. "/iter_3.old.123")
  H.same_list(ckpt.list_iters(dir), { 5 })
  -- the next run removes them all, and only them
  H.same_list(ckpt.remove_partials(dir), { ".iter_7.partial", "iter_3.old.123", "iter_4.tmp.5895846" })
  H.same_list(sorted(ckpt.list_dir(dir)), { "iter_5" })
  H.same_list(ckpt.remove_partials(dir), {})
  H.same_list(ckpt.remove_partials(tmp .. "/absent"), {})
  H.eq(ckpt.load(dir .. "/iter_5").state.iter, 5)
end)

ckpt.remove_tree(tmp)
H.done()

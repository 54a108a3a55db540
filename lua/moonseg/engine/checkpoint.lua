-- checkpoint.lua: save_dir/iter_N/{model,optim,ema}.safetensors + state.json, best_model/,
-- keep_checkpoint_max; every checkpoint is built in a hidden temporary directory
-- (save_dir/.iter_N.partial) and renamed into place, so a crash leaves either the whole
-- checkpoint or none of it, and what a killed save leaves behind is hidden, never listed as
-- a checkpoint, and removed by the next run (remove_partials). File operations are the
-- library's (csrc/io/fs.c), not shell commands.
local ffi = require "ffi"
local ms = require "moonseg"
local json = require "moonseg.json"
local E = require "moonseg.errors"

local M = {}

local C = ms.lib.C
local function check(rc, level) ms.lib.check(rc, (level or 1) + 1) end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
M.exists = exists

function M.mkdir(path) check(C.ms_fs_mkdirs(path), 2) end
function M.remove_tree(path) check(C.ms_fs_remove_tree(path), 2) end

-- Names of the entries of dir (unsorted); an error naming dir when it cannot be read.
function M.list_dir(dir)
  local needed = ffi.new("int64_t[1]")
  check(C.ms_fs_list(dir, nil, 0, needed), 2)
  local cap = tonumber(needed[0]) + 256 -- room for entries added in between
  local buf = ffi.new("char[?]", cap)
  check(C.ms_fs_list(dir, buf, cap, needed), 2)
  local names = {}
  for name in ffi.string(buf, math.min(cap, tonumber(needed[0]))):gmatch("([^\n]+)\n") do names[#names + 1] = name end
  return names
end

-- The hidden names a save works under: .NAME.partial while it is written, .NAME.old for the
-- checkpoint it replaces. Also the visible NAME.tmp.N / NAME.old.N of earlier moonseg versions.
local function is_partial(name)
  return name:match("^%..+%.partial$") or name:match("^%..+%.old$") or name:match("^.+%.tmp%.%d+$")
    or name:match("^.+%.old%.%d+$")
end

-- Removes what interrupted saves left in save_dir; returns the names removed. Runs at the
-- start of training (only one run may write into a save_dir at a time).
function M.remove_partials(save_dir)
  if not exists(save_dir) then return {} end
  local removed = {}
  for _, name in ipairs(M.list_dir(save_dir)) do
    if is_partial(name) then
      M.remove_tree(save_dir .. "/" .. name)
      removed[#removed + 1] = name
    end
  end
  table.sort(removed)
  return removed
end

local function write_text(path, text) ms.lib.check(ms.lib.C.ms_file_write_atomic(path, text, #text), 2) end
M.write_text = write_text

-- Writes the files of a checkpoint into a hidden sibling of dir, then renames it to dir
-- (an older dir of that name is moved aside, hidden, first and removed after).
local function write_dir(dir, files, state)
  local parent, base = dir:match("^(.*)/([^/]+)$")
  if not parent then parent, base = ".", dir end
  local tmp = parent .. "/." .. base .. ".partial"
  M.remove_tree(tmp)
  M.mkdir(tmp)
  for name, content in pairs(files) do
    ms.save(tmp .. "/" .. name .. ".safetensors", content.tensors, content.meta)
  end
  write_text(tmp .. "/state.json", json.encode(state, { indent = "  " }) .. "\n")
  local old
  if exists(dir .. "/state.json") or exists(dir) then
    old = parent .. "/." .. base .. ".old"
    M.remove_tree(old)
    check(C.ms_fs_rename(dir, old), 2)
  end
  check(C.ms_fs_rename(tmp, dir), 2)
  if old then M.remove_tree(old) end
end

-- save(dir, parts): parts = {model = model, optimizer = opt, ema = ema_or_nil, state = {...}}.
function M.save(dir, parts)
  local files = { model = { tensors = parts.model:state_dict(), meta = { format = "moonseg" } } }
  if parts.optimizer then files.optim = { tensors = parts.optimizer:state_dict() } end
  if parts.ema then files.ema = { tensors = parts.ema:state_dict() } end
  local state = parts.state or {}
  -- what rebuilds the model (models/registry.lua), for val/predict given only the checkpoint
  if state.model == nil then state.model = rawget(parts.model, "model_spec") or M.model_spec end
  write_dir(dir, files, state)
end

-- load(dir) -> {model=, optim=, ema=, state=} (tables of tensors and the decoded state).
function M.load(dir)
  if not exists(dir .. "/state.json") or not exists(dir .. "/model.safetensors") then
    E.user("resume: " .. dir .. " is not a moonseg checkpoint (needs model.safetensors and state.json)")
  end
  -- a corrupt or truncated file is the checkpoint's fault, not the program's
  local r = { state = E.as_user(json.read_file, dir .. "/state.json") }
  r.model = E.as_user(ms.load, dir .. "/model.safetensors")
  if exists(dir .. "/optim.safetensors") then r.optim = E.as_user(ms.load, dir .. "/optim.safetensors") end
  if exists(dir .. "/ema.safetensors") then r.ema = E.as_user(ms.load, dir .. "/ema.safetensors") end
  return r
end

-- Iterations of the iter_N checkpoints present in save_dir, ascending.
function M.list_iters(save_dir)
  local iters = {}
  if not exists(save_dir) then return iters end
  for _, name in ipairs(M.list_dir(save_dir)) do
    local n = tonumber(name:match("^iter_(%d+)$"))
    if n and exists(save_dir .. "/" .. name .. "/state.json") then iters[#iters + 1] = n end
  end
  table.sort(iters)
  return iters
end

-- Removes the oldest iter_N checkpoints beyond keep (keep <= 0 keeps all).
function M.prune(save_dir, keep)
  if not keep or keep <= 0 then return end
  local iters = M.list_iters(save_dir)
  for i = 1, #iters - keep do M.remove_tree(save_dir .. "/iter_" .. iters[i]) end
end

return M

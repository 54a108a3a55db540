-- module.lua: nn.Module — named parameters, buffers and submodules, train/eval, state dicts, printing.
local Tensor = require "moonseg.tensor"
local is_tensor = Tensor.is_tensor

local Module = {}
Module.__name = "Module"

-- Instances keep ordered registries; attribute writes route modules, parameters and
-- buffers into them so `self.conv = nn.Conv2d(...)` registers the child.
local function instance_index(self, k)
  local cls = rawget(self, "__class")
  local v = cls[k]
  if v ~= nil then return v end
  local p = rawget(self, "_parameters")
  if p and p[k] ~= nil then return p[k] end
  local b = rawget(self, "_buffers")
  if b and b[k] ~= nil then return b[k] end
  local m = rawget(self, "_modules")
  if m and m[k] ~= nil then return m[k] end
  return nil
end

local function append_name(list, name)
  for _, n in ipairs(list) do if n == name then return end end
  list[#list + 1] = name
end

local function instance_newindex(self, k, v)
  if type(v) == "table" and rawget(v, "__class") and v.is_module then
    self:add_module(k, v)
  elseif is_tensor(v) and rawget(v, "_is_param") then
    self:register_parameter(k, v)
  elseif rawget(self, "_parameters")[k] ~= nil then
    if v ~= nil and not is_tensor(v) then error("parameter '" .. k .. "' must be a tensor", 2) end
    self._parameters[k] = v
  elseif rawget(self, "_buffers")[k] ~= nil then
    self._buffers[k] = v
  else
    rawset(self, k, v)
  end
end

-- nn.class(name, parent): a module class; calling it constructs (runs __init).
function Module.class(name, parent)
  parent = parent or Module
  local cls = setmetatable({ __name = name, __parent = parent }, { __index = parent })
  getmetatable(cls).__call = function(c, ...)
    local self = setmetatable({ __class = c, _parameters = {}, _buffers = {}, _modules = {},
      _param_names = {}, _buffer_names = {}, _module_names = {}, training = true }, c.__instance_mt)
    self:__init(...)
    return self
  end
  cls.__instance_mt = {
    __index = instance_index,
    __newindex = instance_newindex,
    __call = function(self, ...) return self:forward(...) end,
    __tostring = function(self) return self:__repr() end,
  }
  return cls
end

Module.is_module = true
function Module:__init() end
function Module:forward() error(self.__class.__name .. ":forward is not implemented", 2) end

-- Marks t as a parameter (requires grad) for registration by assignment.
function Module.Parameter(t)
  rawset(t, "_is_param", true)
  t.requires_grad = true
  return t
end

function Module:register_parameter(name, t)
  if t ~= nil then
    rawset(t, "_is_param", true)
    t.requires_grad = true
  end
  append_name(self._param_names, name)
  self._parameters[name] = t
end

function Module:register_buffer(name, t)
  append_name(self._buffer_names, name)
  self._buffers[name] = t
end

function Module:add_module(name, m)
  append_name(self._module_names, tostring(name))
  self._modules[tostring(name)] = m
  return m
end

function Module:children()
  local out = {}
  for _, n in ipairs(self._module_names) do
    if self._modules[n] then out[#out + 1] = self._modules[n] end
  end
  return out
end

-- Ordered list of {name, tensor} over the whole tree (PaddleSeg's dotted names).
local stores = { param = "_parameters", buffer = "_buffers" }
local function walk(self, prefix, kind, out)
  local names, store = self["_" .. kind .. "_names"], self[stores[kind]]
  for _, n in ipairs(names) do
    local t = store[n]
    if t ~= nil then out[#out + 1] = { prefix .. n, t } end
  end
  for _, n in ipairs(self._module_names) do
    local m = self._modules[n]
    if m then walk(m, prefix .. n .. ".", kind, out) end
  end
  return out
end

function Module:named_parameters() return walk(self, "", "param", {}) end
function Module:named_buffers() return walk(self, "", "buffer", {}) end
function Module:parameters()
  local out = {}
  for i, p in ipairs(self:named_parameters()) do out[i] = p[2] end
  return out
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:modules()
  local out = { self }
  for _, c in ipairs(self:children()) do
    for _, m in ipairs(c:modules()) do out[#out + 1] = m end
  end
  return out
end

function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode) end
  return self
end
function Module:eval() return self:train(false) end

-- Moves t's contents to device and/or dtype in place: t keeps its identity (optimizers, hooks
-- and state dicts holding it see the moved tensor), its handle now points at the new storage.
local function move_in_place(t, device, dtype)
  if dtype and not t:is_floating_point() then dtype = nil end -- integer buffers keep their dtype
  if not device and not dtype then return end
  local ms = require "moonseg"
  local y = ms.no_grad(function() return t:to(device or t:device_str(), dtype) end)
  if y == t then return end
  t._h, y._h = y._h, t._h
  y:free()
  local g = rawget(t, "grad")
  if g then t.grad = ms.no_grad(function() return g:to(device or g:device_str(), dtype) end) end
end

-- model:to(device), model:to(dtype), model:to(device, dtype), model:to{device=, dtype=}:
-- every parameter and buffer, in place; returns the module. Integer buffers keep their dtype.
function Module:to(a, b)
  local device, dtype
  if type(a) == "table" then device, dtype = a.device, a.dtype
  elseif a ~= nil and Tensor.device_or_dtype(a, 2) == "device" then device, dtype = a, b
  else dtype = a end
  if device then device = Tensor.canonical_device(device) end
  if dtype then Tensor.dtype_arg(dtype) end -- a bad name fails before anything moves
  for _, kv in ipairs(self:named_parameters()) do move_in_place(kv[2], device, dtype) end
  for _, kv in ipairs(self:named_buffers()) do move_in_place(kv[2], device, dtype) end
  return self
end

-- The device of the first parameter (or buffer); the default device for a module holding neither.
function Module:device()
  local p = self:named_parameters()[1] or self:named_buffers()[1]
  if p then return p[2]:device_str() end
  return Tensor.get_default_device()
end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

-- state_dict(): {key -> tensor} plus `__order`-free ordering via keys(); tensors are shared, not copied.
function Module:state_dict()
  local sd = {}
  for _, kv in ipairs(self:named_parameters()) do sd[kv[1]] = kv[2] end
  for _, kv in ipairs(self:named_buffers()) do sd[kv[1]] = kv[2] end
  return sd
end

function Module:state_dict_keys()
  local keys = {}
  for _, kv in ipairs(self:named_parameters()) do keys[#keys + 1] = kv[1] end
  for _, kv in ipairs(self:named_buffers()) do keys[#keys + 1] = kv[1] end
  return keys
end

-- Copies sd's tensors into this module's. strict (default) fails on missing,
-- unexpected or mis-shaped keys, listing each.
function Module:load_state_dict(sd, strict)
  if strict == nil then strict = true end
  local own = self:state_dict()
  local missing, unexpected, misshaped = {}, {}, {}
  for _, k in ipairs(self:state_dict_keys()) do
    if sd[k] == nil then missing[#missing + 1] = k end
  end
  for k, v in pairs(sd) do
    local mine = own[k]
    if mine == nil then
      unexpected[#unexpected + 1] = k
    elseif table.concat(mine:size(), "x") ~= table.concat(v:size(), "x") then
      misshaped[#misshaped + 1] = string.format("%s: checkpoint [%s] vs model [%s]", k,
        table.concat(v:size(), ", "), table.concat(mine:size(), ", "))
    end
  end
  table.sort(unexpected)
  local problems = {}
  if #missing > 0 then problems[#problems + 1] = "missing keys: " .. table.concat(missing, ", ") end
  if #unexpected > 0 then problems[#problems + 1] = "unexpected keys: " .. table.concat(unexpected, ", ") end
  if #misshaped > 0 then problems[#problems + 1] = "mis-shaped: " .. table.concat(misshaped, "; ") end
  if #misshaped > 0 or (strict and #problems > 0) then
    error("load_state_dict: " .. table.concat(problems, "\n  "), 2)
  end
  local ms = require "moonseg"
  ms.no_grad(function()
    for k, v in pairs(sd) do
      -- into the existing tensor: its device and dtype stay (a checkpoint from any device loads)
      local mine = own[k]
      if mine then
        local dev = mine:device_str()
        if v:device_str() ~= dev then v = v:to(dev) end
        mine:copy_(v)
      end
    end
  end)
  return { missing = missing, unexpected = unexpected }
end

function Module:extra_repr() return "" end

function Module:__repr(indent)
  indent = indent or ""
  local head = self.__class.__name .. "(" .. self:extra_repr()
  local kids = self._module_names
  if #kids == 0 then return head .. ")" end
  local lines = { head }
  for _, n in ipairs(kids) do
    local m = self._modules[n]
    if m then lines[#lines + 1] = indent .. "  (" .. n .. "): " .. m:__repr(indent .. "  ") end
  end
  lines[#lines + 1] = indent .. ")"
  return table.concat(lines, "\n")
end

return Module

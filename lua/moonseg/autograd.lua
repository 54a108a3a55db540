-- autograd.lua: define-by-run reverse-mode differentiation over the C kernels.
--
-- An op that wants gradients calls A.record after computing its outputs. The
-- node keeps edges to its inputs (the input's own node, or the leaf tensor to
-- accumulate into) and aliases of the tensors its backward needs; backward
-- frees those aliases as soon as the node has run, so activation memory goes
-- back while backward proceeds, not when Lua's collector gets round to it.
local Tensor = require "moonseg.tensor"
local is_tensor = Tensor.is_tensor

local A = {}
local enabled = true
local seq = 0

function A.is_enabled() return enabled end
function A.set_enabled(on)
  local prev = enabled
  enabled = not not on
  return prev
end

-- Runs fn(...) with gradient recording off; returns fn's results.
local function with_mode(on, fn, ...)
  local prev = enabled
  enabled = on
  local r = { pcall(fn, ...) }
  enabled = prev
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, table.maxn(r))
end
function A.no_grad(fn, ...) return with_mode(false, fn, ...) end
function A.enable_grad(fn, ...) return with_mode(true, fn, ...) end

-- True when recording is on and any argument is a tensor that requires grad (fixed arity:
-- it runs on every op; A.needs_list takes a table).
local function req(x) return is_tensor(x) and x.requires_grad end
function A.needs(a, b, c, d, e)
  return enabled and (req(a) or req(b) or req(c) or req(d) or req(e)) and true or false
end
function A.needs_list(list, n)
  if not enabled then return false end
  for i = 1, n or #list do if req(list[i]) then return true end end
  return false
end

-- A second handle on t for a node to keep; released right after the node's backward.
function A.save(t)
  if t == nil then return nil end
  local L = require "moonseg.lib"
  return Tensor.take(L.C.ms_tensor_alias(Tensor.handle(t), L.out))
end

local function edge_of(x)
  if not is_tensor(x) or not x.requires_grad then return false end
  if x.grad_fn then return { node = x.grad_fn, nr = x._out_nr or 1 } end
  return { leaf = x }
end

-- record(name, inputs, outputs, backward, saved)
--   inputs:   list of the op's tensor inputs (non-tensors and nils allowed: no edge)
--   outputs:  list of the op's output tensors (they become non-leaves)
--   backward: function(node, g1, g2, ...) -> grad for each input (nil where none);
--             gradients it receives are read-only, may be nil for unused outputs
--   saved:    table of values for backward (tensors in it must come from A.save)
--             nil for an op with no backward: a gradient reaching it raises an error naming it
function A.record(name, inputs, outputs, backward, saved)
  backward = backward or function()
    error(name .. ": this op has no backward, but a gradient flows into it (an input requires " ..
          "grad); compute it under ms.no_grad or on detached inputs", 0)
  end
  seq = seq + 1
  local node = { name = name, backward = backward, saved = saved or {}, next = {}, seq = seq,
    nin = #inputs, out_shapes = {}, out_dtypes = {} }
  for i = 1, table.maxn(inputs) do node.next[i] = edge_of(inputs[i]) end
  node.nin = table.maxn(inputs)
  for i, o in ipairs(outputs) do
    o.requires_grad = true
    o.grad_fn = node
    o._out_nr = i
    node.out_shapes[i] = o:size()
    node.out_dtypes[i] = o:type()
  end
  return node
end

local function free_saved(node)
  for k, v in pairs(node.saved) do
    if is_tensor(v) then v:free() end
    node.saved[k] = nil
  end
  node.released = true
end

-- Zeros shaped like output nr of node, in its dtype, on device (the op's device: a backward
-- passes its own; record() does not store one, to keep the per-op cost down), for backwards
-- that need a missing grad.
function A.zeros_for(node, nr, device)
  local ms = require "moonseg"
  return ms.zeros(node.out_shapes[nr], { dtype = node.out_dtypes[nr], device = device })
end

-- backward(roots, grads, retain_graph): roots and grads are lists of tensors.
function A.backward(roots, grads, retain)
  -- Forward temporaries whose Lua handles are already unreachable go now, so
  -- only what nodes saved stays alive through backward.
  collectgarbage()
  local refs, protected = {}, {}
  local function hold(g) refs[g] = (refs[g] or 0) + 1 end
  local function drop(g)
    if g == nil then return end
    local r = (refs[g] or 0) - 1
    refs[g] = r
    if r <= 0 and not protected[g] then g:free() end
  end
  local function maybe_free(g)
    if g ~= nil and (refs[g] or 0) <= 0 and not protected[g] then g:free() end
  end

  -- Count, for every node, how many edges point at it; and per leaf, how many contributions.
  local deps, leaf_deps, seen = {}, {}, {}
  local stack = {}
  for _, r in ipairs(roots) do
    if r.grad_fn and not seen[r.grad_fn] then seen[r.grad_fn] = true; stack[#stack + 1] = r.grad_fn end
  end
  while #stack > 0 do
    local n = table.remove(stack)
    if n.released then
      error("backward through node '" .. n.name .. "' a second time: its saved tensors were " ..
            "already freed; pass retain_graph = true to the first backward", 3)
    end
    for i = 1, n.nin do
      local e = n.next[i]
      if e then
        if e.node then
          deps[e.node] = (deps[e.node] or 0) + 1
          if not seen[e.node] then seen[e.node] = true; stack[#stack + 1] = e.node end
        else
          leaf_deps[e.leaf] = (leaf_deps[e.leaf] or 0) + 1
        end
      end
    end
  end

  local buffers = {}
  local function to_buffer(node, nr, g)
    local b = buffers[node]
    if not b then b = {}; buffers[node] = b end
    if b[nr] == nil then
      b[nr] = g
      hold(g)
    else
      local s = b[nr] + g
      drop(b[nr])
      maybe_free(g)
      b[nr] = s
      hold(s)
    end
  end
  local function to_leaf(leaf, g)
    if leaf.grad == nil then
      if protected[g] or (refs[g] or 0) > 0 then g = g:clone() end
      if g:type() ~= leaf:type() then g = g:to(leaf:type()) end
      leaf.grad = g
      protected[g] = true
    else
      A.no_grad(function() leaf.grad:add_(g) end)
      maybe_free(g)
    end
    leaf_deps[leaf] = leaf_deps[leaf] - 1
    if leaf_deps[leaf] == 0 and leaf._hooks then
      for _, h in ipairs(leaf._hooks) do h(leaf) end
    end
  end

  local ready = {}
  for i, r in ipairs(roots) do
    local g = grads[i]
    protected[g] = true
    if r.grad_fn then
      to_buffer(r.grad_fn, r._out_nr or 1, g)
    elseif r.requires_grad then
      leaf_deps[r] = (leaf_deps[r] or 0) + 1
      to_leaf(r, g)
    end
  end
  for _, r in ipairs(roots) do
    local n = r.grad_fn
    if n and (deps[n] or 0) == 0 and not ready[n] then ready[n] = true end
  end
  local queue = {}
  for n in pairs(ready) do queue[#queue + 1] = n end

  A.no_grad(function()
    while #queue > 0 do
      -- Run the most recently created ready node first (reverse creation order).
      local best = 1
      for i = 2, #queue do if queue[i].seq > queue[best].seq then best = i end end
      local n = queue[best]
      queue[best] = queue[#queue]
      queue[#queue] = nil
      local b = buffers[n] or {}
      buffers[n] = nil
      local nout = #n.out_shapes
      local gins = { n.backward(n, unpack(b, 1, nout)) }
      if not retain then free_saved(n) end
      for i = 1, n.nin do
        local e, g = n.next[i], gins[i]
        if e and g ~= nil then
          if e.leaf then to_leaf(e.leaf, g) else to_buffer(e.node, e.nr, g) end
        elseif g ~= nil then
          maybe_free(g)
        end
        if e and e.node then
          deps[e.node] = deps[e.node] - 1
          if deps[e.node] == 0 then queue[#queue + 1] = e.node end
        end
      end
      for i = 1, nout do drop(b[i]) end
    end
  end)
end

return A

-- nn: modules and layers (moonseg.nn), PyTorch-shaped with Paddle's state-dict names.
local Module = require "moonseg.nn.module"

local nn = { Module = Module, class = Module.class, Parameter = Module.Parameter }
require "moonseg.nn.layers"(nn, require "moonseg")
require "moonseg.nn.sync_bn"(nn, require "moonseg") -- SyncBatchNorm (distributed)
require "moonseg.nn.dropout2d"(nn, require "moonseg") -- channel dropout
require "moonseg.nn.transformer"(nn, require "moonseg") -- Linear, LayerNorm, GELU, DropPath
return nn

-- models: segmentation models with PaddleSeg's names (ms.models.PPLiteSeg{...}, backbones).
local stdcnet = require "moonseg.models.stdcnet"
local pp_liteseg = require "moonseg.models.pp_liteseg"
local mit = require "moonseg.models.mix_transformer"
local hrnet = require "moonseg.models.hrnet"

local models = {
  layers = require "moonseg.models.layers",
  STDCNet = stdcnet.STDCNet,
  STDC1 = stdcnet.STDC1,
  STDC2 = stdcnet.STDC2,
  CatBottleneck = stdcnet.CatBottleneck,
  PPLiteSeg = pp_liteseg.PPLiteSeg,
  PPLiteSegHead = pp_liteseg.PPLiteSegHead,
  PPContextModule = pp_liteseg.PPContextModule,
  UAFM_SpAtten = pp_liteseg.UAFM_SpAtten,
  SegHead = pp_liteseg.SegHead,
  SegFormer = require("moonseg.models.segformer").SegFormer,
  MixVisionTransformer = mit.MixVisionTransformer,
  MixVisionTransformer_B0 = mit.MixVisionTransformer_B0,
  OCRNet = require("moonseg.models.ocrnet").OCRNet,
  HRNet = hrnet.HRNet,
  HRNet_W18 = hrnet.HRNet_W18,
}
-- Backbones by PaddleSeg's names (ms.models.backbones.X{...}), one line per backbone.
models.backbones = models.backbones or {}
models.backbones.MixVisionTransformer_B0 = mit.MixVisionTransformer_B0
models.backbones.HRNet_W18 = hrnet.HRNet_W18
return models

"""HoVerNeXt as run in NucFuseRank: ConvNeXt-V2-tiny encoder, two U-Net decoders, HV + NP heads."""

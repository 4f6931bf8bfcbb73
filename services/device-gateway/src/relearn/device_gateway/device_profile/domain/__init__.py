"""The Device convention's pure rules: the codes and CodeSystems (:mod:`.codes`), :class:`DeviceSpec`
(:mod:`.spec`), a sensor frame against its Device (:mod:`.matching`)."""

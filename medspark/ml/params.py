"""Shared params of medspark's pyspark.ml stages: one mixin per column (as pyspark.ml.param.shared).

A plane row (:mod:`medspark.planes`) has an id, the pixel bytes with their geometry
(``height``, ``width``, ``channels``, ``dtype``), optionally a pixel spacing and a mask. The
columns a stage reads are params with these defaults, so a stage also works on a frame whose
columns are named otherwise (``setImageCol("pixels")``); the geometry columns belong to the
plane encoding and keep their names.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters


class HasIdCol(Params):
    """Mixin for param idCol: the image id column."""

    idCol: Param[str] = Param(Params._dummy(), "idCol", "image id column",
                              typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(idCol="image_id")

    def getIdCol(self) -> str:
        """Gets the value of idCol or its default value."""
        return self.getOrDefault(self.idCol)

    def setIdCol(self, value: str) -> Any:
        """Sets the value of :py:attr:`idCol`."""
        return self._set(idCol=value)


class HasImageCol(Params):
    """Mixin for param imageCol: the column of raw pixel bytes (with the plane's height,
    width, channels and dtype columns)."""

    imageCol: Param[str] = Param(Params._dummy(), "imageCol",
                                 "pixel bytes column (geometry in height/width/channels/dtype)",
                                 typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(imageCol="data")

    def getImageCol(self) -> str:
        """Gets the value of imageCol or its default value."""
        return self.getOrDefault(self.imageCol)

    def setImageCol(self, value: str) -> Any:
        """Sets the value of :py:attr:`imageCol`."""
        return self._set(imageCol=value)


class HasMaskCol(Params):
    """Mixin for param maskCol: the mask column (uint8 0/1 bytes, height x width; null for
    none)."""

    maskCol: Param[str] = Param(Params._dummy(), "maskCol", "mask column (uint8 0/1 bytes)",
                                typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(maskCol="mask")

    def getMaskCol(self) -> str:
        """Gets the value of maskCol or its default value."""
        return self.getOrDefault(self.maskCol)

    def setMaskCol(self, value: str) -> Any:
        """Sets the value of :py:attr:`maskCol`."""
        return self._set(maskCol=value)


class HasSpacingCol(Params):
    """Mixin for param spacingCol: the (row, col) pixel spacing column in mm (null:
    unknown)."""

    spacingCol: Param[str] = Param(Params._dummy(), "spacingCol",
                                   "pixel spacing column: [row_mm, col_mm]",
                                   typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(spacingCol="pixel_spacing_mm")

    def getSpacingCol(self) -> str:
        """Gets the value of spacingCol or its default value."""
        return self.getOrDefault(self.spacingCol)

    def setSpacingCol(self, value: str) -> Any:
        """Sets the value of :py:attr:`spacingCol`."""
        return self._set(spacingCol=value)
